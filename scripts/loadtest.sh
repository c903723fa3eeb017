#!/usr/bin/env bash
# Bounded load and soak test (issue 8): the release server over a generated docroot, 2000
# keep-alive connections from examples/load.rs mixing full GETs, ranges, multi-ranges and
# conditionals, with the server's RSS and open fds sampled every second before, during and after.
#
#   scripts/loadtest.sh [SECONDS]        # seconds per round, default 120
#
# Environment: CONNECTIONS (default 2000), ROUNDS (loads in a row against one server, default 2),
# SETTLE (seconds sampled after each load, default 10), RSS_MARGIN_KIB (allowed RSS after round 1
# minus RSS before, default 131072 = 128 MiB: allocator retention, see docs/reliability.md),
# RSS_GROWTH_KIB (allowed RSS after a later round minus RSS after round 1, default 16384 =
# 16 MiB: the leak check), LOADTEST_DATA (where the 1.2 GiB of generated files live, default
# target/loadtest/www; e.g. a directory under /dev/shm when the disk is short).
# Exits non-zero on any error or wrong byte, when open fds do not come back to where they were,
# or when RSS after settling exceeds those margins.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

seconds=${1:-120}
connections=${CONNECTIONS:-2000}
settle=${SETTLE:-10}
rounds=${ROUNDS:-2}
rss_margin_kib=${RSS_MARGIN_KIB:-131072}
rss_growth_kib=${RSS_GROWTH_KIB:-16384}
data=${LOADTEST_DATA:-"$repo/target/loadtest/www"}
mkdir -p "$repo/target/loadtest"

# Both the server and the tool hold one fd per connection, plus files.
need=$((connections + 1024))
if [ "$(ulimit -n)" -lt "$need" ]; then
    ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
fi
if [ "$(ulimit -n)" -lt "$need" ]; then
    echo "loadtest: ulimit -n is $(ulimit -n), need $need (run as root or raise the hard limit)" >&2
    exit 2
fi

cargo build --release --bin rangeserve --example load
bin="$repo/target/release/rangeserve"
tool="$repo/target/release/examples/load"

# The docroot: files from `rangeserve gen SIZE --seed N`, reused when their size is right (the
# tool checks each file's ETag, the SHA-256 of its bytes, against its own computation).
mkdir -p "$data"
files=(1k.bin:1KiB:1:1024 64k.bin:64KiB:2:65536 1m.bin:1MiB:3:1048576
       100m.bin:100MiB:4:104857600 1g.bin:1GiB:5:1073741824)
tool_files=()
for spec in "${files[@]}"; do
    IFS=: read -r name size seed bytes <<<"$spec"
    if [ "$(stat -c %s "$data/$name" 2>/dev/null || echo -1)" != "$bytes" ]; then
        echo "generating $name ($size, seed $seed)"
        "$bin" gen "$size" --seed "$seed" >"$data/$name.tmp"
        mv "$data/$name.tmp" "$data/$name"
    fi
    tool_files+=(--file "$name:$size:$seed")
done

work=$(mktemp -d)
server_pid=""
sampler_pid=""
cleanup() {
    [ -n "$sampler_pid" ] && kill "$sampler_pid" 2>/dev/null || true
    [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT INT TERM

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
# An empty working directory: no config.toml is read; no RANGESERVE_* from the caller.
(cd "$work" && exec env $(env | grep -o '^RANGESERVE_[A-Z_]*' | sed 's/^/-u /') \
    "$bin" --root "$data" --listen "127.0.0.1:$port" --log-level warn) >"$work/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 100); do
    curl -sf -o /dev/null "http://127.0.0.1:$port/1k.bin" && break
    kill -0 "$server_pid" 2>/dev/null || { cat "$work/server.log"; exit 2; }
    sleep 0.1
done
# Touch every file once, so the "before" figures include the server's open-handle cache
# (src/fs/resolve.rs keeps recently used files open) and the fd comparison is like for like.
for spec in "${files[@]}"; do
    curl -sf -o /dev/null -r 0-0 "http://127.0.0.1:$port/${spec%%:*}"
done

# One line per second: seconds since start, phase, VmRSS KiB, VmHWM KiB, RssAnon KiB, open fds.
phase_file="$work/phase"
echo before >"$phase_file"
samples="$work/samples"
(
    t0=$(date +%s)
    while kill -0 "$server_pid" 2>/dev/null; do
        st=$(cat "/proc/$server_pid/status")
        rss=$(awk '/^VmRSS:/ {print $2}' <<<"$st")
        hwm=$(awk '/^VmHWM:/ {print $2}' <<<"$st")
        anon=$(awk '/^RssAnon:/ {print $2}' <<<"$st")
        fds=$(ls "/proc/$server_pid/fd" | wc -l)
        echo "$(($(date +%s) - t0)) $(cat "$phase_file") $rss $hwm $anon $fds" >>"$samples"
        sleep 1
    done
) &
sampler_pid=$!
sleep 3

# ROUNDS identical loads against the same server, each followed by SETTLE seconds of sampling.
# The first round's RSS after settling is compared with before (allocator retention makes it
# higher: RSS_MARGIN_KIB); every later round's with the first round's (RSS_GROWTH_KIB): memory
# that the allocator keeps for reuse is reused, a leak grows round after round.
tool_failed=0
for round in $(seq "$rounds"); do
    echo "during$round" >"$phase_file"
    echo "== round $round of $rounds: ${seconds} s, $connections connections"
    set +e
    "$tool" --url "http://127.0.0.1:$port" --connections "$connections" --duration "$seconds" \
        "${tool_files[@]}" | tee "$work/tool$round.out"
    st=${PIPESTATUS[0]}
    set -e
    [ "$st" = 0 ] || tool_failed=1
    echo "after$round" >"$phase_file"
    sleep "$settle"
done
kill "$sampler_pid" 2>/dev/null || true
wait "$sampler_pid" 2>/dev/null || true
sampler_pid=""
kill -0 "$server_pid" 2>/dev/null || { echo "loadtest: the server died" >&2; cat "$work/server.log"; exit 1; }
cp "$samples" "$repo/target/loadtest/samples.txt"

mib() { awk -v k="$1" 'BEGIN {printf "%.1f MiB", k/1024}'; }
# last VALUE (column) of PHASE
last() { awk -v p="$1" -v c="$2" '$2==p {v=$c} END {print v}' "$samples"; }
peak() { awk -v p="$1" -v c="$2" '$2==p && $c>m {m=$c} END {print m+0}' "$samples"; }
rss_before=$(last before 3)
fds_before=$(last before 6)
rss_after1=$(last after1 3)

status=0
echo
echo "| round | requests (bytes verified) | errors (connect/io/timeout/status/length/header/bytes) | p50 / p99 | req/s, MB/s | RSS before / peak / after ${settle} s | fds before / peak / after |"
echo "|---|---|---|---|---|---|---|"
prev_rss=$rss_before
prev_fds=$fds_before
for round in $(seq "$rounds"); do
    result=$(grep '^RESULT ' "$work/tool$round.out" || true)
    get() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<" ${result#RESULT }"; }
    rss_peak=$(peak "during$round" 3)
    fds_peak=$(peak "during$round" 6)
    rss_after=$(last "after$round" 3)
    fds_after=$(last "after$round" 6)
    echo "| $round | $(get requests) ($(get verified)) | $(get errors) ($(get err_connect)/$(get err_io)/$(get err_timeout)/$(get err_status)/$(get err_length)/$(get err_header)/$(get err_bytes)) | $(get p50_ms) / $(get p99_ms) ms | $(get rps), $(get mbps) | $(mib "$prev_rss") / $(mib "$rss_peak") / $(mib "$rss_after") | $prev_fds / $fds_peak / $fds_after |"
    if [ -z "$result" ] || [ "$(get errors)" != 0 ]; then
        echo "FAIL: round $round: the load tool reported errors" >&2
        status=1
    fi
    if [ "$fds_after" -gt $((fds_before + 2)) ]; then
        echo "FAIL: round $round: open fds after the load ($fds_after) above before ($fds_before)" >&2
        status=1
    fi
    if [ "$round" = 1 ] && [ "$rss_after" -gt $((rss_before + rss_margin_kib)) ]; then
        echo "FAIL: RSS after round 1 ($(mib "$rss_after")) exceeds RSS before ($(mib "$rss_before")) by more than $(mib "$rss_margin_kib")" >&2
        status=1
    fi
    if [ "$round" != 1 ] && [ "$rss_after" -gt $((rss_after1 + rss_growth_kib)) ]; then
        echo "FAIL: RSS after round $round ($(mib "$rss_after")) exceeds RSS after round 1 ($(mib "$rss_after1")) by more than $(mib "$rss_growth_kib")" >&2
        status=1
    fi
    prev_rss=$rss_after
    prev_fds=$fds_after
done
echo "VmHWM (peak RSS over the whole run): $(mib "$(awk '{v=$4} END {print v}' "$samples")")"
[ "$tool_failed" = 0 ] || { echo "FAIL: the load tool exited non-zero" >&2; status=1; }
echo
[ "$status" = 0 ] && echo "PASS"
echo "samples (t phase rss_kib hwm_kib anon_kib fds): target/loadtest/samples.txt"
exit $status
