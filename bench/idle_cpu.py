#!/usr/bin/env python3
"""CPU an idle AutoCache cluster uses, as a share of one core.

Starts `autocache dev-cluster` (release build), waits until it is ready, and sums the user and
system CPU time of its server processes over a window (from /proc/PID/stat). Then kills one
node with SIGKILL and measures the survivors the same way: a node that is down must not make
the others busy. The goal for three nodes with the default 16 groups is under 5% of one core.

Usage: bench/idle_cpu.py [--nodes 3] [--groups 16] [--seconds 60] [--binary PATH]
"""
import argparse
import os
import signal
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dev_cluster  # noqa: E402
from compare import build, cpu_seconds  # noqa: E402

def measure(pids, seconds):
    before = cpu_seconds(pids)
    time.sleep(seconds)
    after = cpu_seconds(pids)
    return 100.0 * (after - before) / seconds


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--groups", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--binary", help="an autocache binary (default: build the release one)")
    args = parser.parse_args()

    binary = args.binary or build()
    with tempfile.TemporaryDirectory() as tmp:
        cluster, pids = dev_cluster.start(binary, os.path.join(tmp, "cluster"), args.nodes,
                                          args.groups, dev_cluster.base_port())
        try:
            time.sleep(3)  # let leadership settle after the last transfer
            idle = measure(pids, args.seconds)
            print("idle %d-node cluster, %d groups: %.2f%% of one core in total over %.0fs"
                  % (args.nodes, args.groups, idle, args.seconds))
            os.kill(pids[-1], signal.SIGKILL)
            time.sleep(10)  # elections for the groups the killed node led
            survivors = measure(pids[:-1], args.seconds)
            print("with node %d killed, the %d others: %.2f%% of one core in total"
                  % (len(pids), len(pids) - 1, survivors))
        finally:
            cluster.send_signal(signal.SIGTERM)
            cluster.wait()


if __name__ == "__main__":
    main()
