#!/usr/bin/env python3
"""How long a big keyspace's snapshots stall other clients, against Redis's BGSAVE.

Loads the same number of keys into a release autocache (`--groups G`, 2 by default, so each
group holds millions of keys) and into a redis-server with `appendonly yes, appendfsync
always`, then, on each in turn, runs pipelined SET load over those keys while one more client
sends PING every 2 ms and times each reply. AutoCache snapshots a group every
`--snapshot-every` entries (10,000 by default) and once it holds over 100,000 keys no sooner
than after half as many entries as it holds keys; Redis is sent BGSAVE (a fork) once the load
has run a second. Prints, per server, the worst PING, its 99.9th percentile, how many took over
20 ms, the SET rate, and the ratios; with `--no-snapshots` a second autocache run with
snapshots off shows what the snapshots themselves cost.

Usage: bench/snapshot_stall.py [--keys N] [--groups G] [--seconds S] [--binary B]
                               [--no-snapshots] [--perf FILE]
"""
import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compare import build, free_port, load_keys, wait_port  # noqa: E402


def ping_probe(port, stop, latencies):
    """PINGs `port` every 2 ms until `stop` is set, appending (round trip in ms, when it was
    sent on CLOCK_MONOTONIC, as `perf record -k CLOCK_MONOTONIC` stamps samples)."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    while not stop.is_set():
        started, sent = time.perf_counter(), time.monotonic()
        sock.sendall(b"PING\r\n")
        reply = b""
        while not reply.endswith(b"\r\n"):
            chunk = sock.recv(64)
            if not chunk:
                raise RuntimeError("server closed the probe connection")
            reply += chunk
        latencies.append(((time.perf_counter() - started) * 1000, sent))
        time.sleep(0.002)
    sock.close()


def run_load(port, keys, seconds, during=None):
    """SET -P 16 over `keys` keys for about `seconds`, with a PING probe; returns
    (SET/s, PING latencies in ms). `during` runs once the load has run a second."""
    stop = threading.Event()
    latencies = []
    probe = threading.Thread(target=ping_probe, args=(port, stop, latencies))
    probe.start()
    started = time.perf_counter()
    load = subprocess.Popen(
        ["redis-benchmark", "-p", str(port), "-c", "50", "-P", "16", "-t", "set", "-r", str(keys),
         "-n", "100000000", "-d", "16", "-q"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    if during:
        time.sleep(1)
        during()
    time.sleep(max(0, seconds - (time.perf_counter() - started)))
    load.terminate()
    out, _ = load.communicate()
    elapsed = time.perf_counter() - started
    stop.set()
    probe.join()
    # redis-benchmark -q prints its progress as "SET: rps=N (overall: M) avg_msec=..." lines.
    overall = re.findall(r"rps=[0-9.]+ \(overall: ([0-9.]+)\)", out)
    rate = float(overall[-1]) if overall else float("nan")
    return rate, latencies, elapsed


def summary(name, rate, latencies):
    ordered = sorted(latencies)
    p999 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.999))][0]
    slow = sum(1 for x, _ in ordered if x > 20)
    print("%-22s SET %9.0f/s  PING worst %7.1f ms  p99.9 %6.1f ms  >20 ms: %4d of %d"
          % (name, rate, ordered[-1][0], p999, slow, len(ordered)))
    print("%-22s worst PINGs sent at (CLOCK_MONOTONIC s): %s" % (
        "", ", ".join("%.3f (%.0f ms)" % (at, ms) for ms, at in ordered[-5:][::-1])))
    sys.stdout.flush()
    return ordered[-1][0]


SNAPSHOTS_ON = 10_000


def autocache_run(binary, tmp, args, snapshot_every):
    port = free_port()
    data = os.path.join(tmp, "ac-%d" % snapshot_every)
    server = subprocess.Popen(
        [binary, "server", "--port", str(port), "--data-dir", data, "--groups", str(args.groups),
         "--snapshot-every", str(snapshot_every)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=dict(os.environ, RUST_LOG="warn"))
    try:
        wait_port(port, server)
        load_keys(port, args.keys)
        perf = None
        if args.perf and snapshot_every == SNAPSHOTS_ON:
            # CPU samples and context switches of every thread, on the probe's clock.
            perf = subprocess.Popen(
                ["perf", "record", "-q", "-g", "-k", "CLOCK_MONOTONIC", "-e", "cpu-clock",
                 "-e", "sched:sched_switch", "-p", str(server.pid), "-o", args.perf],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(0.5)
        rate, latencies, _ = run_load(port, args.keys, args.seconds)
        if perf:
            perf.send_signal(signal.SIGINT)
            perf.wait()
        return rate, latencies
    finally:
        server.terminate()
        server.wait()


def redis_run(tmp, args):
    port = free_port()
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "yes", "--appendfsync", "always", "--dir", tmp],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port, server)
        load_keys(port, args.keys)

        def bgsave():
            subprocess.run(["redis-cli", "-p", str(port), "BGSAVE"], capture_output=True, check=True)

        rate, latencies, _ = run_load(port, args.keys, args.seconds, during=bgsave)
        return rate, latencies
    finally:
        server.terminate()
        server.wait()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--keys", type=int, default=3_000_000)
    parser.add_argument("--groups", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--binary", help="an autocache binary (default: build a release one)")
    parser.add_argument("--perf", metavar="FILE",
                        help="perf record autocache's run (snapshots on) into FILE")
    parser.add_argument("--no-snapshots", action="store_true",
                        help="also run autocache with snapshots off")
    args = parser.parse_args()
    binary = args.binary or build()
    with tempfile.TemporaryDirectory() as tmp:
        print("%d keys, SET -c 50 -P 16 -d 16 over them for %.0f s, PING every 2 ms"
              % (args.keys, args.seconds))
        redis_rate, redis_lat = redis_run(tmp, args)
        redis_worst = summary("redis (BGSAVE)", redis_rate, redis_lat)
        ac_rate, ac_lat = autocache_run(binary, tmp, args, SNAPSHOTS_ON)
        ac_worst = summary("autocache (%d groups)" % args.groups, ac_rate, ac_lat)
        if args.no_snapshots:
            rate, lat = autocache_run(binary, tmp, args, 1 << 40)
            summary("autocache, no snapshots", rate, lat)
        print("ratios autocache / redis: SET %.2fx, worst PING %.2fx"
              % (ac_rate / redis_rate, ac_worst / redis_worst))


if __name__ == "__main__":
    main()
