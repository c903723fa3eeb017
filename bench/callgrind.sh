#!/usr/bin/env bash
# Instructions per request of the release server, counted by callgrind: the measure behind the
# "instructions per 304" figures in bench/README.md. Deterministic enough to compare two builds
# (about +-1%), unlike req/s. Needs valgrind and wrk (Debian packages).
#
#   bench/callgrind.sh [--bin PATH] [--root DIR] [--keep FILE] [--h2c] URL_PATH [client args...]
#
#   bench/callgrind.sh /1k.bin                                   # S1-like GETs
#   bench/callgrind.sh /1m.bin -H 'If-None-Match: "<etag>"'      # S4-like 304s
#   bench/callgrind.sh --h2c /1k.bin                             # T3b-like GETs over h2c
#
# The server runs under callgrind with instrumentation off; it is switched on only around a
# `wrk -t1 -c8 -d8s` run (with --h2c: `h2load -n 20000 -c16 -m16`, as T3 but counted, and
# nghttp2-client's h2load needed), so start-up and shutdown are not counted. `--keep FILE` keeps the
# profile for `callgrind_annotate --inclusive=yes FILE` (build with
# CARGO_PROFILE_RELEASE_DEBUG=line-tables-only for per-line costs).
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
        *) break ;;
    esac
done
[[ $# -ge 1 ]] || { echo "usage: $0 [--bin PATH] [--root DIR] [--keep FILE] URL_PATH [wrk args...]" >&2; exit 2; }
path=$1; shift
for tool in valgrind callgrind_control callgrind_annotate wrk curl; do
    command -v "$tool" >/dev/null || { echo "$tool is missing (apt-get install valgrind wrk curl)" >&2; exit 1; }
done
[[ -x $bin ]] || { echo "no binary at $bin (cargo build --release)" >&2; exit 1; }
[[ -d $root ]] || { echo "no docroot at $root (run bench/run.py once, or pass --root)" >&2; exit 1; }

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
out=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$out"' EXIT
valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$out/cg" \
    "$bin" --root "$root" --listen "127.0.0.1:$port" --log-level warn >"$out/log" 2>&1 &
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
