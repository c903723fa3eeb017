#!/usr/bin/env bash
# Runs every cargo-fuzz target of fuzz/ for SECONDS each, then prints per target the
# executions and the coverage of libFuzzer's final line (`#N DONE cov: X ft: Y`).
#
#   scripts/fuzz.sh SECONDS            all targets at once (parallel), each for SECONDS
#   scripts/fuzz.sh SECONDS --seq      one after the other
#   FUZZ_TARGETS="range resolve" scripts/fuzz.sh 60    only these
#
# Every fuzzer runs under `nice -n 10`, one process per target (no -jobs). Builds with the
# nightly toolchain, AddressSanitizer (cargo-fuzz's default) and debug assertions (so an
# arithmetic overflow is a crash too). Installs cargo-fuzz when it is missing. The corpus grows
# in fuzz/corpus/TARGET (seeded from fuzz/seeds/TARGET), crashes land in
# fuzz/artifacts/TARGET/, logs in fuzz/logs/TARGET.log. Exits 1 if any target crashed.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

say() { printf 'fuzz: %s\n' "$*"; }

secs=${1:-}
mode=${2:-parallel}
if ! [[ "$secs" =~ ^[0-9]+$ ]] || [ "$secs" -lt 1 ] || { [ "$mode" != parallel ] && [ "$mode" != --seq ]; }; then
  echo "usage: scripts/fuzz.sh SECONDS [--seq]" >&2
  exit 2
fi
targets=(${FUZZ_TARGETS:-range preconditions resolve multipart})

if ! rustup run nightly cargo --version >/dev/null 2>&1; then
  say "installing the nightly toolchain (cargo-fuzz needs it)"
  rustup toolchain install nightly --profile minimal
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  say "installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

mkdir -p logs
say "building the targets (nightly, address sanitizer, debug assertions; log in fuzz/logs/build.log)"
if ! nice -n 10 cargo +nightly fuzz build --debug-assertions >logs/build.log 2>&1; then
  tail -n 30 logs/build.log
  say "FAIL: the build failed"
  exit 1
fi
triple=$(rustc +nightly -vV | sed -n 's/^host: //p')
bin_dir=target/$triple/release
for t in "${targets[@]}"; do
  [ -x "$bin_dir/$t" ] || { say "FAIL: $bin_dir/$t was not built"; exit 1; }
done

started=logs/.started
touch "$started"
run_one() {
  local t=$1
  mkdir -p "corpus/$t" "artifacts/$t"
  if [ -d "seeds/$t" ]; then cp "seeds/$t"/* "corpus/$t/"; fi
  # -timeout: an input that takes 10 s is a hang, reported like a crash.
  nice -n 10 "$bin_dir/$t" "corpus/$t" \
    -artifact_prefix="artifacts/$t/" \
    -max_total_time="$secs" \
    -timeout=10 \
    -rss_limit_mb=2048 \
    -print_final_stats=1 \
    >"logs/$t.log" 2>&1
}

say "running each target for $secs s ($mode)"
declare -A rc
if [ "$mode" = --seq ]; then
  for t in "${targets[@]}"; do
    set +e; run_one "$t"; rc[$t]=$?; set -e
  done
else
  declare -A pid
  for t in "${targets[@]}"; do
    run_one "$t" &
    pid[$t]=$!
  done
  for t in "${targets[@]}"; do
    set +e; wait "${pid[$t]}"; rc[$t]=$?; set -e
  done
fi

failed=0
printf '%-14s %6s %14s %8s %8s %12s  %s\n' target exit executions cov ft corpus result
for t in "${targets[@]}"; do
  log=logs/$t.log
  done_line=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -n 1 || true)
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$done_line")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$done_line")
  corp=$(sed -n 's/.* corp: \([0-9]*\/[0-9a-zA-Z]*\).*/\1/p' <<<"$done_line")
  crashes=$(find "artifacts/$t" -type f -newer "$started" | wc -l)
  result=ok
  if [ "${rc[$t]}" -ne 0 ] || [ -z "$done_line" ] || [ "$crashes" -gt 0 ]; then
    result="CRASHED (see $log and fuzz/artifacts/$t/)"
    failed=1
  fi
  printf '%-14s %6s %14s %8s %8s %12s  %s\n' "$t" "${rc[$t]}" "${execs:-?}" "${cov:-?}" \
    "${ft:-?}" "${corp:-?}" "$result"
  if [ -n "$done_line" ]; then printf "  %s\n" "$done_line"; fi
done
exit "$failed"
