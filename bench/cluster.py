#!/usr/bin/env python3
"""A three-node AutoCache cluster vs one redis-server, on this machine, as ratios.

Starts `autocache dev-cluster` (release build; every write is committed by a majority of its
group's replicas, each fsyncing its raft log) and one redis-server without persistence, runs
`redis-benchmark --cluster` against the cluster and plain redis-benchmark against Redis for
each test, alternating which goes first, and prints cluster/Redis ratios of throughput (higher
is better) and p99 latency (lower is better). All processes share this machine's cores with
the load generator, so absolute numbers are noisy; the ratios are what to compare. For the
cluster it also prints the CPU time each request cost: the nodes' (every thread of every
server process, from /proc) and the load generator's, in microseconds. Two cores run at most
2,000,000 / (their sum) requests a second, however short the latency.

Usage: bench/cluster.py [--nodes 3] [--requests N] [--clients C] [--tests set,get]
                        [--rounds R] [--groups G] [--binary PATH]
"""
import argparse
import csv
import io
import os
import resource
import signal
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dev_cluster  # noqa: E402
from compare import build, cpu_seconds, free_port, median, wait_port  # noqa: E402


def start_cluster(binary, tmp, args):
    base = dev_cluster.base_port()
    proc, _pids = dev_cluster.start(binary, os.path.join(tmp, "cluster"), args.nodes,
                                    args.groups, base)
    return proc, base


def server_pids(cluster):
    """The node processes dev-cluster started."""
    with open("/proc/%d/task/%d/children" % (cluster.pid, cluster.pid)) as f:
        return [int(pid) for pid in f.read().split()]


def bench(port, test, requests, clients, cluster=None):
    """(rps, p99 ms, µs of server CPU per request, µs of benchmark CPU per request); the CPU
    figures for the cluster only."""
    command = ["redis-benchmark", "-p", str(port), "-c", str(clients), "-n", str(requests),
               "-t", test, "--csv", "-r", "100000"]
    if cluster:
        command.insert(1, "--cluster")
        pids = server_pids(cluster)
        servers_before = cpu_seconds(pids)
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    client_before = usage.ru_utime + usage.ru_stime
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    client_cpu = usage.ru_utime + usage.ru_stime - client_before
    server_cpu = cpu_seconds(pids) - servers_before if cluster else 0.0
    rows = [row for row in csv.reader(io.StringIO(out)) if row]
    header = next(row for row in rows if row[0] == "test")
    row = dict(zip(header, rows[-1]))
    per_request = 1e6 / requests
    return (float(row["rps"]), float(row["p99_latency_ms"]), server_cpu * per_request,
            client_cpu * per_request)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--nodes", type=int, default=3)
    # redis-benchmark --cluster ends on its 250 ms progress tick, so a run's rate moves in steps
    # of 250 ms over the run's length: 300,000 requests (~10 s) keep the steps near 2.5%.
    parser.add_argument("--requests", type=int, default=300_000)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--tests", default="set,get")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--groups", type=int, default=16)
    parser.add_argument("--binary", help="an autocache binary (default: build the release one)")
    args = parser.parse_args()

    binary = args.binary or build()
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
            print("%-6s %12s %12s %8s %9s %9s %8s %10s %10s" % (
                "test", "redis rps", "cluster rps", "ratio", "redis p99", "clu p99", "p99 ratio",
                "nodes µs", "bench µs"))
            for i, test in enumerate(args.tests.split(",")):
                results = {"redis": [], "cluster": []}
                for r in range(args.rounds):
                    order = ["redis", "cluster"] if (i + r) % 2 == 0 else ["cluster", "redis"]
                    for name in order:
                        port = redis_port if name == "redis" else cluster_port
                        results[name].append(bench(port, test, args.requests, args.clients,
                                                   cluster if name == "cluster" else None))
                rps = {k: median([x[0] for x in v]) for k, v in results.items()}
                p99 = {k: median([x[1] for x in v]) for k, v in results.items()}
                rps_ratio = median([c[0] / r[0] for c, r in zip(results["cluster"], results["redis"])])
                p99_ratio = median([c[1] / max(r[1], 1e-9) for c, r in zip(results["cluster"], results["redis"])])
                nodes_cpu = median([x[2] for x in results["cluster"]])
                bench_cpu = median([x[3] for x in results["cluster"]])
                print("%-6s %12.0f %12.0f %7.2fx %8.3fms %8.3fms %7.2fx %10.1f %10.1f" % (
                    test, rps["redis"], rps["cluster"], rps_ratio, p99["redis"], p99["cluster"],
                    p99_ratio, nodes_cpu, bench_cpu))
                sys.stdout.flush()
        finally:
            redis.terminate()
            redis.wait()
            cluster.send_signal(signal.SIGTERM)
            cluster.wait()


if __name__ == "__main__":
    main()
