#!/usr/bin/env python3
"""The long Jepsen matrix: `jepsen test` on 5 nodes under every nemesis combined, for each
workload and seed, with release builds; prints a Markdown results table (the one in README).

Needs root (network namespaces). Takes about (time limit + 1 min) per run:

    sudo python3 jepsen/matrix.py                       # 4 workloads x 3 seeds, 300 s each
    sudo python3 jepsen/matrix.py --workloads register --seeds 1 --time-limit 60

Exit code 0 when every run passed, 1 otherwise.
"""

import argparse
import json
import os
import pathlib
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
TARGET = pathlib.Path(
    os.environ.get("CARGO_TARGET_DIR", pathlib.Path.home() / ".cache/autocache-target")
)


def build():
    env = dict(os.environ, CARGO_TARGET_DIR=str(TARGET))
    # Separate invocations, so that the packages' features are those of their own builds and
    # the release RocksDB is never rebuilt for another feature set.
    for package in ["node", "jepsen"]:
        subprocess.run(
            ["cargo", "build", "--release", "-p", package], cwd=ROOT, env=env, check=True
        )


def run(workload, seed, args):
    out = pathlib.Path(args.out) / f"{workload}-seed{seed}"
    command = [
        str(TARGET / "release/jepsen"), "test",
        "--nodes", str(args.nodes),
        "--workload", workload,
        "--nemesis", args.nemesis,
        "--time-limit", str(args.time_limit),
        "--seed", str(seed),
        "--concurrency", str(args.concurrency),
        "--binary", str(TARGET / "release/autocache"),
        "--out", str(out),
    ]
    started = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True)
    elapsed = time.monotonic() - started
    summary_path = out / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    verdict = (done.stdout.strip().splitlines() or ["(no output)"])[-1]
    return {
        "workload": workload,
        "seed": seed,
        "code": done.returncode,
        "verdict": verdict,
        "summary": summary,
        "elapsed": elapsed,
        "out": out,
        "stderr": done.stderr[-2000:],
    }


def faults(summary):
    """(windows, faults): a window of the combined schedule may hold two faults."""
    windows = summary.get("faults", [])
    return len(windows), sum(len(w.split(" + ")) for w in windows)


def row(result, args):
    summary = result["summary"]
    windows, count = faults(summary)
    verdict = "valid" if result["code"] == 0 else result["verdict"][:80]
    return (
        f"| {result['workload']} | {result['seed']} | {args.nodes} | {args.time_limit} s "
        f"| {summary.get('operations', '?')} | {summary.get('ok', '?')} "
        f"| {summary.get('fail', '?')} | {summary.get('info', '?')} "
        f"| {count} in {windows} windows | {verdict} |"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", default="register,list-append,set,counter")
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--nodes", type=int, default=5)
    parser.add_argument("--time-limit", type=int, default=300)
    parser.add_argument("--nemesis", default="all")
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--out", default="/tmp/jepsen-matrix")
    parser.add_argument("--no-build", action="store_true")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("the matrix runs clusters in network namespaces: run it as root")
    if not args.no_build:
        build()
    results = []
    for workload in args.workloads.split(","):
        for seed in [int(s) for s in args.seeds.split(",")]:
            result = run(workload, seed, args)
            results.append(result)
            print(row(result, args), "  # " + str(result["out"]), f"{result['elapsed']:.0f} s",
                  file=sys.stderr, flush=True)
            if result["code"] != 0:
                print(result["stderr"], file=sys.stderr)
    print(f"| workload | seed | nodes | time | operations | ok | fail | info | faults | verdict |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for result in results:
        print(row(result, args))
    sys.exit(0 if all(r["code"] == 0 for r in results) else 1)


if __name__ == "__main__":
    main()
