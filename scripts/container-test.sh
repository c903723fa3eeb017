#!/usr/bin/env bash
# Builds the real Dockerfile with buildah (Docker format, which keeps HEALTHCHECK) and runs the image, on a machine with no Docker daemon
# and no registry: the Dockerfile's `build` stage is replaced (--build-context build=DIR) by a
# folder holding out/rangeserve, a static binary built here with cargo. Then the image's
# entrypoint runs under `buildah run`, and the host checks it over 127.0.0.1: a file, a range,
# the ETag, the healthcheck, the non-root user, the image size, and a clean exit on SIGTERM.
#
# Fails when buildah is missing and CI is set; skips (saying so) on a developer machine.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf 'container-test: %s\n' "$*"; }
fail() { say "FAIL: $*"; exit 1; }

if ! command -v buildah >/dev/null 2>&1; then
  [ -n "${CI:-}" ] && fail "buildah is not installed (apt-get install buildah)"
  say "skipped: buildah is not installed (apt-get install buildah)"
  exit 0
fi
for tool in curl sha256sum python3; do
  command -v "$tool" >/dev/null 2>&1 || fail "$tool is not installed"
done

work=$(mktemp -d /tmp/rangeserve-container.XXXXXX)
# A private image store, so the test neither sees nor leaves anything in the machine's.
store=(--storage-driver vfs --root "$work/storage" --runroot "$work/runroot")
bh() { buildah "${store[@]}" "$@"; }
# The process under $1 (at any depth) whose command line is exactly /rangeserve.
find_server() {
  local kid
  for kid in $(pgrep -P "$1"); do
    if [ "$(tr '\0' ' ' <"/proc/$kid/cmdline" 2>/dev/null)" = "/rangeserve " ]; then
      echo "$kid"; return 0
    fi
    find_server "$kid" && return 0
  done
  return 1
}
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then
    srv=$(find_server "$server_pid" || true)
    [ -n "$srv" ] && kill -KILL "$srv" 2>/dev/null
    kill -KILL "$server_pid" 2>/dev/null || true
  fi
  bh rm --all >/dev/null 2>&1 || true
  bh rmi --all --force >/dev/null 2>&1 || true
  rm -rf "$work" 2>/dev/null || { chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"; }
}
trap cleanup EXIT

# The Dockerfile's TARGETARCH -> Rust target mapping, taken from the Dockerfile and run for
# both platforms it supports (and one it does not); then this machine's is built.
arch_map=$(python3 - <<'PY'
import re
text = open("Dockerfile").read().replace("\\\n", "\n")
m = re.search(r'(case "\$\{TARGETARCH:-amd64\}" in.*?esac)', text, re.S)
print(m.group(1) if m else "")
PY
)
[ -n "$arch_map" ] || fail "no TARGETARCH mapping in the Dockerfile"
for pair in amd64:x86_64-unknown-linux-gnu arm64:aarch64-unknown-linux-gnu; do
  got=$(TARGETARCH=${pair%%:*} sh -c "$arch_map") || fail "TARGETARCH=${pair%%:*}: the mapping failed"
  [ "$got" = "${pair#*:}" ] || fail "TARGETARCH=${pair%%:*} maps to '$got', expected ${pair#*:}"
done
if TARGETARCH=riscv64 sh -c "$arch_map" >/dev/null 2>&1; then fail "an unsupported TARGETARCH is accepted"; fi
say "TARGETARCH mapping: amd64 and arm64 right, others refused"
case "$(uname -m)" in
  x86_64) arch=amd64 ;; aarch64) arch=arm64 ;; *) fail "no image for $(uname -m)" ;;
esac
target=$(TARGETARCH=$arch sh -c "$arch_map")

say "building the static binary for $target"
RUSTFLAGS="-C target-feature=+crt-static" \
  cargo build --release --locked --target "$target"
mkdir -p "$work/build/out"
cp "target/$target/release/rangeserve" "$work/build/out/rangeserve"
strip "$work/build/out/rangeserve"
if ldd "$work/build/out/rangeserve" 2>&1 | grep -q '=>'; then
  fail "the binary is dynamically linked: $(ldd "$work/build/out/rangeserve")"
fi

say "building the image from the Dockerfile"
bh bud --format docker --isolation chroot --build-arg TARGETARCH=$arch --build-context build="$work/build" -t rangeserve:test . >"$work/bud.log" 2>&1 \
  || { cat "$work/bud.log"; fail "buildah bud"; }

size_bytes=$(bh inspect --type image --format '{{.Docker.Size}}' rangeserve:test 2>/dev/null || echo 0)
if [ "${size_bytes:-0}" -le 0 ]; then
  # Older buildah: add up the layer sizes of the image.
  size_bytes=$(bh inspect --type image rangeserve:test | python3 -c '
import json,sys; d=json.load(sys.stdin)
print(sum(l.get("size",0) for l in d.get("History",[]) if isinstance(l,dict)) or 0)')
fi
mnt_ctr=$(bh from rangeserve:test)
mnt=$(bh mount "$mnt_ctr")
content_bytes=$(du -sb "$mnt" | cut -f1)
say "image content: $content_bytes bytes ($(du -sh "$mnt" | cut -f1)); files: $(cd "$mnt" && find . -type f | sort | tr '\n' ' ')"
[ "$content_bytes" -lt 15000000 ] || fail "image content is $content_bytes bytes, over 15 MB"
[ -x "$mnt/rangeserve" ] || fail "no /rangeserve in the image"
[ -f "$mnt/etc/rangeserve/config.toml" ] || fail "no /etc/rangeserve/config.toml in the image"
[ -f "$mnt/www/index.html" ] || fail "no /www/index.html in the image"
bh umount "$mnt_ctr" >/dev/null
bh rm "$mnt_ctr" >/dev/null

user=$(bh inspect --type image --format '{{.OCIv1.Config.User}}' rangeserve:test)
[ "$user" = "65532:65532" ] || fail "image user is '$user', expected 65532:65532"
exposed=$(bh inspect --type image --format '{{.OCIv1.Config.ExposedPorts}}' rangeserve:test)
case "$exposed" in *8080*) ;; *) fail "EXPOSE 8080 missing: $exposed" ;; esac
health=$(bh inspect --type image --format '{{.Docker.Config.Healthcheck}}' rangeserve:test)
case "$health" in *healthcheck*) ;; *) fail "HEALTHCHECK missing: $health" ;; esac

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
ctr=$(bh from rangeserve:test)
say "running the image's entrypoint on port $port"
# The image listens on 0.0.0.0:8080; the test overrides only the port (the host network is
# shared under chroot isolation), the rest comes from the image's config and environment.
buildah "${store[@]}" run --isolation chroot --env RANGESERVE_LISTEN=0.0.0.0:$port "$ctr" -- /rangeserve \
  >"$work/server.log" 2>&1 &
server_pid=$!   # buildah itself (not a subshell), so that cleanup can find what it started

deadline=$((SECONDS + 30))
until curl -s -o /dev/null "http://127.0.0.1:$port/"; do
  kill -0 "$server_pid" 2>/dev/null || { cat "$work/server.log"; fail "the server exited"; }
  [ $SECONDS -lt $deadline ] || { cat "$work/server.log"; fail "no answer on port $port after 30 s"; }
  sleep 0.2
done

url="http://127.0.0.1:$port/samples/random-256k.bin"
want=$(sha256sum www/samples/random-256k.bin | cut -d' ' -f1)
got=$(curl -sf "$url" | sha256sum | cut -d' ' -f1)
[ "$got" = "$want" ] || fail "full GET: sha256 $got, expected $want"
etag=$(curl -sfI "$url" | tr -d '\r' | sed -n 's/^etag: //Ip')
[ "$etag" = "\"$want\"" ] || fail "ETag $etag, expected \"$want\""
range=$(curl -sf -r 1000-1999 "$url" | sha256sum | cut -d' ' -f1)
want_range=$(head -c 2000 www/samples/random-256k.bin | tail -c 1000 | sha256sum | cut -d' ' -f1)
[ "$range" = "$want_range" ] || fail "range 1000-1999 differs"
status=$(curl -s -o /dev/null -w '%{http_code}' -r 1000-1999 -H "If-Range: $etag" "$url")
[ "$status" = 206 ] || fail "If-Range with the ETag: $status"
say "file, range, ETag and If-Range are right"

# The healthcheck, as the image's HEALTHCHECK runs it (same container, same environment).
bh run --isolation chroot --env RANGESERVE_LISTEN=0.0.0.0:$port "$ctr" -- /rangeserve healthcheck \
  >"$work/health.log" 2>&1 || { cat "$work/health.log"; fail "healthcheck exited non-zero"; }
say "healthcheck: $(cat "$work/health.log")"
# It asks the server itself (OPTIONS *, 204): no file or directory is read for it.
grep -q "answered 204" "$work/health.log" || fail "the healthcheck did not ask OPTIONS *: $(cat "$work/health.log")"
# The landing page's samples/ has no index file: with the image's settings it is not listed.
status=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/samples/")
[ "$status" = 404 ] || fail "GET /samples/: $status, expected 404 (listings are off in the image)"

# The server runs as the image's user, not root.
srv=$(find_server "$server_pid" || true)
if [ -n "$srv" ]; then
  uid=$(awk '/^Uid:/ {print $2}' "/proc/$srv/status")
  [ "$uid" = 65532 ] || fail "the server runs as uid $uid, expected 65532"
  say "server process $srv runs as uid $uid"
  kill -TERM "$srv"
  deadline=$((SECONDS + 15))
  while kill -0 "$server_pid" 2>/dev/null; do
    [ $SECONDS -lt $deadline ] || fail "still running 15 s after SIGTERM"
    sleep 0.1
  done
  wait "$server_pid" || fail "the container exited with $? after SIGTERM"
  server_pid=""
  say "SIGTERM: clean exit"
else
  fail "cannot find the server process"
fi
# Someone's files at /www (copied into a container of the image: buildah's chroot isolation
# does not bind-mount volumes here): served, and not listed.
mkdir -p "$work/files/sub"
printf 'hello' >"$work/files/hello.txt"
printf 'deep\n' >"$work/files/sub/deep.txt"
chmod -R a+rX "$work/files"
chmod a+x "$work"   # mktemp -d is 0700: the image's user must get through it to the files
ctr2=$(bh from rangeserve:test)
bh copy --chown 0:0 "$ctr2" "$work/files" /www >/dev/null
buildah "${store[@]}" run --isolation chroot \
  --env RANGESERVE_LISTEN=0.0.0.0:$port "$ctr2" -- /rangeserve >"$work/server2.log" 2>&1 &
server_pid=$!
deadline=$((SECONDS + 30))
until curl -s -o /dev/null "http://127.0.0.1:$port/hello.txt"; do
  kill -0 "$server_pid" 2>/dev/null || { cat "$work/server2.log"; fail "the server exited"; }
  [ $SECONDS -lt $deadline ] || { cat "$work/server2.log"; fail "no answer on port $port after 30 s"; }
  sleep 0.2
done
got=$(curl -s -w ' %{http_code}' "http://127.0.0.1:$port/hello.txt")
[ "$got" = "hello 200" ] || { cat "$work/server2.log"; fail "the mounted file is not served: $got"; }
status=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/sub/")
[ "$status" = 404 ] || fail "GET /sub/ (no index file): $status, expected 404 (no listing)"
say "someone's files at /www are served without a listing"
srv=$(find_server "$server_pid" || true)
[ -n "$srv" ] && kill -TERM "$srv"
wait "$server_pid" || true
server_pid=""
say "ok"
