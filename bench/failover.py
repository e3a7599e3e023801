#!/usr/bin/env python3
"""How long the groups of a killed node stay unwritable.

Each round starts a fresh `autocache dev-cluster` (release build), lets leadership settle,
kills one node with SIGKILL, and then (at once) writes one key of every slot group through a
survivor,
following MOVED redirections and retrying CLUSTERDOWN, TRYAGAIN and refused connections, until
every group took a write. It prints, per round, how long the slowest group took from the first
attempt and how many groups had to fail over; at the end, the spread over all rounds.

A dead leader is replaced once its followers' leases lapse and then an election timeout ends
(1.6 s + 1.0-1.6 s here); a split vote costs another election timeout each time it repeats.

With --metadata the node killed is the metadata group's leader, and the time is until
`autocache admin status` on a survivor names another leader of that group (admin commands and
gossip use it; it heartbeats every 2 s and fails over in 6-7 s).

With --graceful the node is stopped with SIGTERM instead: it hands the groups it leads to
caught-up followers first, so each should take a write again at once (one redirect); --quiet S
leaves the cluster without writes for S seconds after the node is gone, as idle groups are.

Usage: bench/failover.py [--rounds 10] [--nodes 3] [--groups 16] [--graceful] [--quiet S]
                         [--metadata] [--binary PATH]
"""
import argparse
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dev_cluster  # noqa: E402
from compare import build  # noqa: E402

SLOTS = 16384


def crc16(data):
    crc = 0
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc


def key_per_group(groups):
    """One key whose slot lies in each group's contiguous slot range."""
    per_group = SLOTS // groups
    keys = {}
    i = 0
    while len(keys) < groups:
        key = "failover:%d" % i
        keys.setdefault(min(crc16(key.encode()) % SLOTS // per_group, groups - 1), key)
        i += 1
    return [keys[g] for g in range(groups)]


def command(port, *args, timeout=1.0):
    """Sends one command; returns its reply line (without CRLF), or None if the node is down."""
    request = b"*%d\r\n" % len(args) + b"".join(
        b"$%d\r\n%s\r\n" % (len(a.encode()), a.encode()) for a in args)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as conn:
            conn.sendall(request)
            reply = b""
            while not reply.endswith(b"\r\n"):
                chunk = conn.recv(4096)
                if not chunk:
                    return None
                reply += chunk
            return reply[:-2].decode()
    except OSError:
        return None


def write_following(port, key, alive_ports):
    """One attempt to SET `key`, following MOVED; True once a node acknowledged it."""
    for _ in range(4):
        reply = command(port, "SET", key, "1")
        if reply is None:
            return False
        if reply == "+OK":
            return True
        if reply.startswith("-MOVED "):
            port = int(reply.rsplit(":", 1)[1])
            if port not in alive_ports:
                return False
            continue
        return False  # CLUSTERDOWN, TRYAGAIN, an unknown outcome: try again later
    return False


def leaders(port, groups):
    """The client port of each group's leader as `port` sees it (CLUSTER SLOTS)."""
    out = subprocess.run(["redis-cli", "-p", str(port), "--csv", "cluster", "slots"],
                         capture_output=True, text=True).stdout
    # Ranges print as start,end,"host",port,"id",... all on one line.
    by_slot = {int(start): int(port)
               for start, _end, port in re.findall(r'(\d+),(\d+),"[^"]*",(\d+)', out)}
    per_group = SLOTS // groups
    return [by_slot.get(g * per_group) for g in range(groups)]


def metadata_leader(binary, raft_port):
    """The metadata group's leader as the node with raft port `raft_port` reports it, or None."""
    try:
        out = subprocess.run([binary, "admin", "--node", "127.0.0.1:%d" % raft_port, "status"],
                             capture_output=True, text=True, timeout=5).stdout
    except subprocess.TimeoutExpired:
        return None
    found = re.search(r"^metadata group \d+: leader (\d+),", out, re.M)
    return int(found.group(1)) if found else None


@contextlib.contextmanager
def settled_cluster(binary, args, base):
    """A fresh dev-cluster, once leadership has moved to the preferred leaders; yields its
    nodes' pids and stops it afterwards."""
    with tempfile.TemporaryDirectory() as tmp:
        cluster, pids = dev_cluster.start(binary, os.path.join(tmp, "cluster"), args.nodes,
                                          args.groups, base)
        try:
            time.sleep(args.settle)
            yield pids
        finally:
            cluster.send_signal(signal.SIGTERM)
            cluster.wait()


def metadata_round(binary, args, base):
    """Kills the metadata group's leader; returns (victim index, seconds until a survivor
    names another leader, or None past --limit)."""
    with settled_cluster(binary, args, base) as pids:
        leader = metadata_leader(binary, base + 10000)
        if leader is None:
            sys.exit("no metadata group leader")
        victim = leader - 1
        survivor = base + 10000 + (0 if victim else 1)
        os.kill(pids[victim], signal.SIGKILL)
        killed = time.monotonic()
        while time.monotonic() - killed < args.limit:
            if metadata_leader(binary, survivor) not in (None, leader):
                return victim, time.monotonic() - killed
            time.sleep(0.05)
        return victim, None


def one_round(binary, args, victim, base):
    with settled_cluster(binary, args, base) as pids:
        ports = [base + i for i in range(args.nodes)]
        victim_port = ports[victim]
        alive = [p for p in ports if p != victim_port]
        led = leaders(alive[0], args.groups)
        orphaned = sum(1 for port in led if port == victim_port)
        keys = key_per_group(args.groups)
        os.kill(pids[victim], signal.SIGTERM if args.graceful else signal.SIGKILL)
        if args.graceful:
            while os.path.exists("/proc/%d" % pids[victim]):  # dev-cluster reaps it
                time.sleep(0.01)
        time.sleep(args.quiet)
        killed = time.monotonic()  # writes start now
        pending = set(range(args.groups))
        took = {}
        while pending and time.monotonic() - killed < args.limit:
            for group in sorted(pending):
                if write_following(alive[group % len(alive)], keys[group], alive):
                    took[group] = time.monotonic() - killed
                    pending.discard(group)
            time.sleep(0.01)
        return orphaned, took, pending


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--groups", type=int, default=16)
    parser.add_argument("--settle", type=float, default=5.0,
                        help="seconds between the cluster being ready and the kill")
    parser.add_argument("--limit", type=float, default=30.0,
                        help="seconds after the kill before a group counts as stuck")
    parser.add_argument("--graceful", action="store_true",
                        help="stop the node with SIGTERM (it hands its groups over first)")
    parser.add_argument("--quiet", type=float, default=0.0,
                        help="seconds without writes after the node is gone")
    parser.add_argument("--metadata", action="store_true",
                        help="kill the metadata group's leader and time its replacement")
    parser.add_argument("--binary", help="an autocache binary (default: build the release one)")
    args = parser.parse_args()

    binary = args.binary or build()
    base = dev_cluster.base_port()
    slowest = []
    for n in range(args.rounds):
        if args.metadata:
            victim, took = metadata_round(binary, args, base)
            slowest.append(took if took is not None else float("inf"))
            print("round %d: node %d, the metadata group's leader, killed; %s" % (
                n + 1, victim + 1, "another node leads it after %.2fs" % took
                if took is not None else "STUCK: no new leader"), flush=True)
            continue
        orphaned, took, stuck = one_round(binary, args, n % args.nodes, base)
        worst = max(took.values(), default=0.0)
        slowest.append(worst if not stuck else float("inf"))
        print("round %d: node %d %s, it led %d groups; every group written %.2fs after writes resumed%s"
              % (n + 1, n % args.nodes + 1, "stopped" if args.graceful else "killed", orphaned, worst,
                 "; STUCK: groups %s" % sorted(stuck) if stuck else ""), flush=True)
    slowest.sort()
    print("%s per round over %d rounds: min %.2fs, median %.2fs, max %.2fs"
          % ("new metadata leader" if args.metadata else "slowest group", len(slowest),
             slowest[0], slowest[len(slowest) // 2], slowest[-1]))


if __name__ == "__main__":
    main()
