#!/usr/bin/env python3
"""AutoCache vs redis-server, side by side on this machine, as ratios.

Starts a release autocache (durable: every write is fsynced in its raft log before the reply)
and a redis-server (no persistence, or with `--redis-fsync always` an append-only file fsynced
before every reply, the durability AutoCache gives) on free ports, runs
redis-benchmark for each test against both, alternating which goes first, with and without
pipelining, and prints AutoCache/Redis ratios of throughput (higher is better) and p99 latency
(lower is better), and the CPU time each server spent per request (all its threads, from /proc:
far steadier than throughput on a shared machine, so the figure to watch when changing the
write path). Then loads the same number of keys into each and prints resident memory per
key. Both servers run on the same machine as the load generator, so absolute numbers are noisy;
the ratios are what to compare.

Usage: bench/compare.py [--requests N] [--clients C] [--keys K] [--tests set,get,...]
                        [--pipelines 1,16] [--rounds R] [--redis-fsync no|always]
                        [--groups G] [--skip-memory] [--binary PATH]

MSET writes keys of different slot groups, which AutoCache refuses (CROSSSLOT) unless
`--groups 1`; it is left out of the default tests.
"""
import argparse
import csv
import io
import os
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTS = "set,get,incr,lpush,rpush,lpop,rpop,sadd,hset,spop,zadd,lrange_100"


def median(values):
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, proc):
    for _ in range(400):
        if proc.poll() is not None:
            sys.exit("server exited early")
        try:
            socket.create_connection(("127.0.0.1", port)).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit("server did not start on %d" % port)


def cpu_seconds(pids):
    """User plus system CPU time of processes `pids`, all their threads, in seconds."""
    ticks = 0
    for pid in pids:
        with open("/proc/%d/stat" % pid) as f:
            # The command name may hold spaces: fields count from after its closing paren.
            fields = f.read().rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def rss_bytes(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def build():
    target = os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/autocache-target"))
    env = dict(os.environ, CARGO_TARGET_DIR=target)
    subprocess.run(["cargo", "build", "--release", "--quiet", "-p", "node"], cwd=ROOT, env=env, check=True)
    return os.path.join(target, "release", "autocache")


def start(binary, tmp, args):
    servers = {}
    port = free_port()
    persistence = ["--appendonly", "no"] if args.redis_fsync == "no" else [
        "--appendonly", "yes", "--appendfsync", "always"]
    servers["redis"] = (subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""] + persistence +
        ["--dir", tmp], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL), port)
    port = free_port()
    servers["autocache"] = (subprocess.Popen(
        [binary, "server", "--port", str(port), "--data-dir", os.path.join(tmp, "ac"),
         "--threads", str(args.threads), "--groups", str(args.groups)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=dict(os.environ, RUST_LOG="warn")), port)
    for proc, port in servers.values():
        wait_port(port, proc)
    return servers


def bench(server, test, requests, clients, pipeline):
    """(rps, p99 ms, µs of the server's CPU per request) of one redis-benchmark run."""
    proc, port = server
    cpu_before = cpu_seconds([proc.pid])
    out = subprocess.run(
        ["redis-benchmark", "-p", str(port), "-c", str(clients), "-n", str(requests), "-t", test,
         "-P", str(pipeline), "--csv", "-r", "100000"],
        capture_output=True, text=True, check=True).stdout
    cpu = cpu_seconds([proc.pid]) - cpu_before
    rows = list(csv.reader(io.StringIO(out)))
    header, data = rows[0], rows[1:]
    # The last row is the test itself (lrange first fills the list with LPUSH).
    row = dict(zip(header, data[-1]))
    return float(row["rps"]), float(row["p99_latency_ms"]), cpu * 1e6 / requests


def flush(port):
    subprocess.run(["redis-cli", "-p", str(port), "FLUSHALL"], capture_output=True, check=True)


def load_keys(port, keys):
    payload = io.BytesIO()
    for i in range(keys):
        key = b"key:%012d" % i
        payload.write(b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$3\r\nxxx\r\n" % (len(key), key))
    subprocess.run(["redis-cli", "-p", str(port), "--pipe"], input=payload.getvalue(),
                   capture_output=True, check=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=1_000_000)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--tests", default=TESTS)
    parser.add_argument("--pipelines", default="1,16")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--threads", type=int, default=0, help="autocache worker threads (0: its default)")
    parser.add_argument("--groups", type=int, default=16, help="autocache slot groups")
    parser.add_argument("--redis-fsync", choices=["no", "always"], default="no",
                        help="redis persistence: none, or appendonly with appendfsync always")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--binary", help="an autocache binary (default: build the release one)")
    args = parser.parse_args()

    binary = args.binary or build()
    with tempfile.TemporaryDirectory() as tmp:
        servers = start(binary, tmp, args)
        try:
            print("redis persistence: %s; autocache: %d groups, every write fsynced in its raft log"
                  % ("appendonly, appendfsync always" if args.redis_fsync == "always" else "none",
                     args.groups))
            # Memory first, on fresh servers: after FLUSHALL, allocators return freed memory to
            # the OS lazily, which would skew a before/after difference.
            per_key = {}
            for name in [] if args.skip_memory else ["redis", "autocache"]:
                proc, port = servers[name]
                time.sleep(0.5)
                before = rss_bytes(proc.pid)
                load_keys(port, args.keys)
                time.sleep(0.5)
                after = rss_bytes(proc.pid)
                per_key[name] = (after - before) / args.keys
            if per_key:
                print("memory: %d keys (SET key:%%012d xxx): redis %.1f B/key, autocache %.1f B/key, ratio %.2fx"
                      % (args.keys, per_key["redis"], per_key["autocache"], per_key["autocache"] / per_key["redis"]))
                print()
            print("redis-benchmark -c %d -n %d, %d round(s); ratio = median over rounds of autocache / redis"
                  % (args.clients, args.requests, args.rounds))
            print("%-12s %3s %12s %12s %8s %9s %9s %8s %9s %9s" % (
                "test", "-P", "redis rps", "autocache", "ratio", "redis p99", "ac p99", "p99 ratio",
                "redis µs", "ac µs"))
            # Like a plain redis-benchmark run, the tests share one keyspace: GET reads what SET
            # wrote (random keys among 100000), LPOP pops what LPUSH pushed.
            for name in servers:
                flush(servers[name][1])
            for pipeline in [int(p) for p in args.pipelines.split(",")]:
                for i, test in enumerate(args.tests.split(",")):
                    results = {"redis": [], "autocache": []}
                    for r in range(args.rounds):
                        order = ["redis", "autocache"] if (i + r) % 2 == 0 else ["autocache", "redis"]
                        for name in order:
                            results[name].append(bench(servers[name], test, args.requests, args.clients, pipeline))
                    # Paired ratios per round, then the median: the machine is shared and noisy,
                    # and a pair of back-to-back runs sees the same noise.
                    rps = {k: median([x[0] for x in v]) for k, v in results.items()}
                    p99 = {k: median([x[1] for x in v]) for k, v in results.items()}
                    cpu = {k: median([x[2] for x in v]) for k, v in results.items()}
                    rps_ratio = median([a[0] / r[0] for a, r in zip(results["autocache"], results["redis"])])
                    p99_ratio = median([a[1] / max(r[1], 1e-9) for a, r in zip(results["autocache"], results["redis"])])
                    print("%-12s %3d %12.0f %12.0f %7.2fx %8.3fms %8.3fms %7.2fx %9.2f %9.2f" % (
                        test, pipeline, rps["redis"], rps["autocache"], rps_ratio,
                        p99["redis"], p99["autocache"], p99_ratio, cpu["redis"], cpu["autocache"]))
                    sys.stdout.flush()
        finally:
            for proc, _ in servers.values():
                proc.terminate()
                proc.wait()


if __name__ == "__main__":
    main()
