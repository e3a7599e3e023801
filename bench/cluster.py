#!/usr/bin/env python3
"""A three-node AutoCache cluster vs one redis-server, on this machine, as ratios.

Starts `autocache dev-cluster` (release build; every write is committed by a majority of its
group's replicas, each fsyncing its raft log) and one redis-server without persistence, runs
`redis-benchmark --cluster` against the cluster and plain redis-benchmark against Redis for
each test, alternating which goes first, and prints cluster/Redis ratios of throughput (higher
is better) and p99 latency (lower is better). All processes share this machine's cores with
the load generator, so absolute numbers are noisy; the ratios are what to compare.

Usage: bench/cluster.py [--nodes 3] [--requests N] [--clients C] [--tests set,get]
                        [--rounds R] [--groups G]
"""
import argparse
import csv
import io
import os
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compare import build, free_port, median, wait_port  # noqa: E402


def start_cluster(binary, tmp, args):
    # dev-cluster takes base-port .. base-port + nodes - 1, and raft ports 10000 above.
    base = 21000 + (os.getpid() % 400) * 10
    command = [binary, "dev-cluster", "--nodes", str(args.nodes), "--base-port", str(base),
               "--data-dir", os.path.join(tmp, "cluster"), "--groups", str(args.groups)]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True,
                            env=dict(os.environ, RUST_LOG="warn"))
    deadline = time.time() + 90
    for line in proc.stdout:
        if line.startswith("cluster ready"):
            return proc, base
        if time.time() > deadline:
            break
    proc.kill()
    sys.exit("dev-cluster did not get ready")


def bench(port, test, requests, clients, cluster):
    command = ["redis-benchmark", "-p", str(port), "-c", str(clients), "-n", str(requests),
               "-t", test, "--csv", "-r", "100000"]
    if cluster:
        command.insert(1, "--cluster")
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    rows = [row for row in csv.reader(io.StringIO(out)) if row]
    header = next(row for row in rows if row[0] == "test")
    row = dict(zip(header, rows[-1]))
    return float(row["rps"]), float(row["p99_latency_ms"])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--requests", type=int, default=200_000)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--tests", default="set,get")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--groups", type=int, default=16)
    args = parser.parse_args()

    binary = build()
    with tempfile.TemporaryDirectory() as tmp:
        redis_port = free_port()
        redis = subprocess.Popen(
            ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", tmp],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        cluster, cluster_port = start_cluster(binary, tmp, args)
        try:
            wait_port(redis_port, redis)
            print("autocache: %d-node dev-cluster, %d groups, writes committed by a majority "
                  "(each fsyncing); redis: one server, no persistence" % (args.nodes, args.groups))
            print("redis-benchmark -c %d -n %d, %d round(s); ratio = median over rounds of cluster / redis"
                  % (args.clients, args.requests, args.rounds))
            print("%-6s %12s %12s %8s %9s %9s %8s" % (
                "test", "redis rps", "cluster rps", "ratio", "redis p99", "clu p99", "p99 ratio"))
            for i, test in enumerate(args.tests.split(",")):
                results = {"redis": [], "cluster": []}
                for r in range(args.rounds):
                    order = ["redis", "cluster"] if (i + r) % 2 == 0 else ["cluster", "redis"]
                    for name in order:
                        port = redis_port if name == "redis" else cluster_port
                        results[name].append(
                            bench(port, test, args.requests, args.clients, name == "cluster"))
                rps = {k: median([x[0] for x in v]) for k, v in results.items()}
                p99 = {k: median([x[1] for x in v]) for k, v in results.items()}
                rps_ratio = median([c[0] / r[0] for c, r in zip(results["cluster"], results["redis"])])
                p99_ratio = median([c[1] / max(r[1], 1e-9) for c, r in zip(results["cluster"], results["redis"])])
                print("%-6s %12.0f %12.0f %7.2fx %8.3fms %8.3fms %7.2fx" % (
                    test, rps["redis"], rps["cluster"], rps_ratio, p99["redis"], p99["cluster"], p99_ratio))
                sys.stdout.flush()
        finally:
            redis.terminate()
            redis.wait()
            cluster.send_signal(signal.SIGTERM)
            cluster.wait()


if __name__ == "__main__":
    main()
