#!/usr/bin/env bash
# Instructions per request of the release server, counted by callgrind: the measure behind the
# "instructions per 304" figures in bench/README.md. Deterministic enough to compare two builds
# (about +-1%), unlike req/s. Needs valgrind and wrk (Debian packages).
#
#   bench/callgrind.sh [--bin PATH] [--root DIR] [--keep FILE] [--h2c] [--lighttpd] URL_PATH [client args...]
#
#   bench/callgrind.sh /1k.bin                                   # S1-like GETs
#   bench/callgrind.sh /1m.bin -H 'If-None-Match: "<etag>"'      # S4-like 304s
#   bench/callgrind.sh --h2c /1k.bin                             # T3b-like GETs over h2c
#   bench/callgrind.sh --lighttpd /1k.bin                        # the same, counted in lighttpd
#
# The server runs under callgrind with instrumentation off; it is switched on only around a
# `wrk -t1 -c8 -d8s` run (with --h2c: `h2load -n 20000 -c16 -m16`, as T3 but counted, and
# nghttp2-client's h2load needed), so start-up and shutdown are not counted. `--keep FILE` keeps the
# profile for `callgrind_annotate --inclusive=yes FILE` (build with
# CARGO_PROFILE_RELEASE_DEBUG=line-tables-only for per-line costs). `--lighttpd` counts the
# reference instead, with the configuration bench/run.py gives it (one process, the same docroot),
# so that both servers' own work is compared however much the machine's system calls
# cost (the CPU-per-request ratios move with that; instructions do not).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=$here/../target/release/rangeserve
root=$here/../target/bench-data/files
keep=
while [[ $# -gt 0 ]]; do
    case $1 in
        --bin) bin=$2; shift 2 ;;
        --root) root=$2; shift 2 ;;
        --keep) keep=$2; shift 2 ;;
        --h2c) h2c=1; shift ;;
        --lighttpd) lighttpd=1; shift ;;
        *) break ;;
    esac
done
[[ $# -ge 1 ]] || { echo "usage: $0 [--bin PATH] [--root DIR] [--keep FILE] [--h2c] [--lighttpd] URL_PATH [client args...]" >&2; exit 2; }
path=$1; shift
for tool in valgrind callgrind_control callgrind_annotate wrk curl; do
    command -v "$tool" >/dev/null || { echo "$tool is missing (apt-get install valgrind wrk curl)" >&2; exit 1; }
done
if [[ -n ${lighttpd:-} ]]; then
    command -v lighttpd >/dev/null || { echo "lighttpd is missing (apt-get install lighttpd)" >&2; exit 1; }
else
    [[ -x $bin ]] || { echo "no binary at $bin (cargo build --release)" >&2; exit 1; }
fi
[[ -d $root ]] || { echo "no docroot at $root (run bench/run.py once, or pass --root)" >&2; exit 1; }

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
out=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$out"' EXIT
if [[ -n ${lighttpd:-} ]]; then
    # Written by bench/run.py's own Lighttpd class, so that it is the benchmark's configuration
    # (lighttpd 1.4.69 speaks h2c with it too: HTTP/2 is on by default).
    conf=$(python3 -B - "$here" "$out" "$(cd "$root" && pwd)" "$port" <<'EOF'
import sys
here, out, root, port = sys.argv[1:]
sys.path.insert(0, here)
import run
server = run.Lighttpd(out, root)
server.port = int(port)
server.drop_to_nobody = False
server.write_conf()
print(server.conf)
EOF
)
    server=(lighttpd -D -f "$conf")
else
    server=("$bin" --root "$root" --listen "127.0.0.1:$port" --log-level warn)
fi
valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$out/cg" \
    "${server[@]}" >"$out/log" 2>&1 &
pid=$!
for _ in $(seq 150); do
    curl -s -o /dev/null "http://127.0.0.1:$port$path" && break
    sleep 0.2
done
callgrind_control -i on "$pid" >/dev/null 2>&1
if [[ -n ${h2c:-} ]]; then
    # Only responses that succeeded count; a run with failures is reported, not divided.
    requests=$(h2load -n 20000 -c16 -m16 "$@" "http://127.0.0.1:$port$path" |
        awk '/^requests:/ {print ($10 == 0 ? $8 : "")}')
else
    requests=$(wrk -t1 -c8 -d8s "$@" "http://127.0.0.1:$port$path" | awk '/requests in/ {print $1}')
fi
callgrind_control -i off "$pid" >/dev/null 2>&1
kill -INT "$pid"
wait "$pid" 2>/dev/null || true
total=$(callgrind_annotate "$out/cg" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
[[ -n $keep ]] && cp "$out/cg" "$keep"
[[ -n $requests ]] || { echo "the client reported failed requests; see $out/log" >&2; exit 1; }
echo "$path: $requests requests, $((total / requests)) instructions per request"
