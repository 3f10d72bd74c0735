#!/usr/bin/env python3
"""Compares two tokenbridge binaries on the live bench's volume phase, side by side.

This host's speed drifts by a third over minutes, so one binary measured after the other
says little about a change of 10 %. Here both daemons run at the same time, each on its own
copy of the workload (10,000 small transcripts, then 50 sessions appending 20 lines every
100 ms), into one ClickHouse: whatever slows the host slows both. Each round swaps which one
starts first. Printed per round and binary: CPU per MB appended (all threads, from /proc)
and each thread's CPU seconds.

    scripts/live_ab.py OLD_BINARY NEW_BINARY [--rounds 3] [--seconds 30]

ClickHouse: started through OLD_BINARY's managed mode on ports 28123/29000 (Debian's
clickhouse-server, as ./scripts/setup.sh installs it), in a temporary folder.
Not covered: the one-line-a-second phase, latency, and ClickHouse's own CPU.
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

HTTP_PORT = 28123
SESSIONS = 50
LINES_PER_WRITE = 20


def q(sql):
    return urllib.request.urlopen(f"http://127.0.0.1:{HTTP_PORT}/", sql.encode()).read().decode().strip()


def ts():
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + ".%03dZ" % int((t % 1) * 1000)


def line(session, i):
    return (
        '{"type":"assistant","sessionId":"%s","timestamp":"%s","requestId":"r-%s-%d",'
        '"message":{"id":"m-%s-%d","model":"claude-sonnet-4-20250514",'
        '"usage":{"input_tokens":3,"output_tokens":7}}}\n' % (session, ts(), session, i, session, i)
    )


def thread_cpu(pid):
    """CPU seconds of each thread of `pid`, by thread name."""
    out = {}
    tick = os.sysconf("SC_CLK_TCK")
    for t in os.listdir(f"/proc/{pid}/task"):
        try:
            st = open(f"/proc/{pid}/task/{t}/stat").read()
        except OSError:
            continue
        name = st[st.index("(") + 1 : st.rindex(")")]
        f = st.rsplit(")", 1)[1].split()
        out[name] = out.get(name, 0.0) + (int(f[11]) + int(f[12])) / tick
    return out


class Side:
    """One binary's daemon and workload."""

    def __init__(self, binary, work, db):
        self.binary, self.work, self.db = binary, work, db
        self.root = os.path.join(work, "claude")
        self.result = None

    def prepare(self):
        shutil.rmtree(self.work, ignore_errors=True)
        for i in range(10_000):
            p, s = i // 100, i % 100
            d = f"{self.root}/projects/p{p}"
            os.makedirs(d, exist_ok=True)
            session = f"p{p}s{s}"
            with open(f"{d}/{session}.jsonl", "w") as f:
                f.write('{"type":"user","sessionId":"%s","message":{"content":"hi"}}\n' % session)
                f.write(line(session, 0))
        q(f"DROP DATABASE IF EXISTS {self.db}")
        cfg = os.path.join(self.work, "config.toml")
        with open(cfg, "w") as f:
            f.write(
                f'[watch]\ndirs = ["{self.root}"]\n[state]\ndir = "{self.work}/state"\n'
                f'[clickhouse]\nmode = "external"\nurl = "http://127.0.0.1:{HTTP_PORT}"\n'
                f'database = "{self.db}"\n[log]\nlevel = "info"\nformat = "json"\n[http]\nenabled = false\n'
            )
        self.log = open(os.path.join(self.work, "daemon.log"), "w")
        self.daemon = subprocess.Popen(
            [self.binary, "run", "--config", cfg], stdout=subprocess.DEVNULL, stderr=self.log
        )
        while self.count() < 10_000:
            assert self.daemon.poll() is None, f"{self.binary} exited; see {self.work}/daemon.log"
            time.sleep(0.2)

    def count(self):
        try:
            return int(q(f"SELECT count() FROM {self.db}.messages FINAL"))
        except Exception:
            return -1

    def run(self, seconds, start_at):
        sessions = [
            f"{self.root}/projects/p{(i * 37) % 100}/p{(i * 37) % 100}s{(i * 11) % 100}.jsonl"
            for i in range(SESSIONS)
        ]
        time.sleep(max(0.0, start_at - time.time()))
        cpu0 = thread_cpu(self.daemon.pid)
        t0 = time.time()
        written = 0
        for tick in range(seconds * 10):
            for path in sessions:
                s = os.path.basename(path)[:-6]
                block = "".join(line(s, 1_000_000 + tick * 1_000 + j) for j in range(LINES_PER_WRITE))
                with open(path, "a") as f:
                    f.write(block)
                written += len(block)
            wait = t0 + 0.1 * (tick + 1) - time.time()
            if wait > 0:
                time.sleep(wait)
        want = 10_000 + seconds * 10 * SESSIONS * LINES_PER_WRITE
        while self.count() < want:
            time.sleep(0.02)
        landed = time.time() - t0
        cpu1 = thread_cpu(self.daemon.pid)
        self.result = (written / 1e6, landed, {k: cpu1[k] - cpu0.get(k, 0.0) for k in cpu1})

    def stop(self):
        self.daemon.terminate()
        self.daemon.wait()
        self.log.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("old")
    ap.add_argument("new")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=30)
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="tb-live-ab-")
    empty = os.path.join(tmp, "empty")
    os.makedirs(empty)
    with open(os.path.join(tmp, "server.toml"), "w") as f:
        f.write(
            f'[watch]\ndirs = ["{empty}"]\n[state]\ndir = "{tmp}/server-state"\n'
            f'[clickhouse]\nmode = "managed"\nmanaged_http_port = {HTTP_PORT}\nmanaged_tcp_port = 29000\n'
            f'database = "ab_server"\n[http]\nenabled = false\n'
        )
    server = subprocess.Popen(
        [args.old, "run", "--config", os.path.join(tmp, "server.toml")],
        stdout=subprocess.DEVNULL,
        stderr=open(os.path.join(tmp, "server.log"), "w"),
    )
    try:
        deadline = time.time() + 120
        while True:
            try:
                q("SELECT 1")
                break
            except Exception:
                assert time.time() < deadline and server.poll() is None, f"no ClickHouse; see {tmp}/server.log"
                time.sleep(0.5)
        ratios = []
        for r in range(args.rounds):
            order = [("old", args.old), ("new", args.new)]
            if r % 2:
                order.reverse()
            sides = {name: Side(b, os.path.join(tmp, name), f"ab_{name}") for name, b in order}
            for name, _ in order:
                sides[name].prepare()
            start_at = time.time() + 3
            threads = [threading.Thread(target=sides[n].run, args=(args.seconds, start_at)) for n, _ in order]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            per_mb = {}
            for name, _ in order:
                mb, landed, cpu = sides[name].result
                total = sum(cpu.values())
                per_mb[name] = total * 1000 / mb
                busy = ", ".join(f"{k} {v:.2f} s" for k, v in sorted(cpu.items()) if v >= 0.01)
                print(f"round {r} {name}: {mb:.1f} MB landed in {landed:.1f} s, {per_mb[name]:.1f} ms/MB ({busy})")
                sides[name].stop()
            ratios.append(per_mb["new"] / per_mb["old"])
            print(f"round {r}: new / old CPU per MB = {ratios[-1]:.3f}", flush=True)
        ratios.sort()
        print(f"median new / old: {ratios[len(ratios) // 2]:.3f} (rounds: {', '.join(f'{x:.3f}' for x in ratios)})")
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
