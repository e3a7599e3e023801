"""Starting `autocache dev-cluster` for the benchmark scripts."""
import os
import subprocess
import sys
import time


def base_port():
    """A base port for this run: client, raft (+10000) and metrics (+20000) ports all below
    Linux's ephemeral range (32768 on), where an outgoing connection could take one first."""
    return 2000 + (os.getpid() % 1000) * 10


def start(binary, data_dir, nodes, groups, base):
    """Starts dev-cluster with nodes serving clients on base .. base + nodes - 1, and waits
    until it reports ready. Returns the dev-cluster process and the pids of its nodes."""
    proc = subprocess.Popen(
        [binary, "dev-cluster", "--nodes", str(nodes), "--base-port", str(base),
         "--data-dir", data_dir, "--groups", str(groups)],
        stdout=subprocess.PIPE, text=True, env=dict(os.environ, RUST_LOG="warn"))
    pids = []
    deadline = time.time() + 90
    for line in proc.stdout:
        if line.startswith("node ") and " pid " in line:
            pids.append(int(line.rsplit(" pid ", 1)[1]))
        if line.startswith("cluster ready"):
            return proc, pids
        if time.time() > deadline:
            break
    proc.kill()
    sys.exit("dev-cluster did not get ready")
