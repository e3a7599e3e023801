#!/usr/bin/env bash
# Slot moves under load: a five-node release dev-cluster (client ports 7200-7204) where
# redis-py writes and checks 40 keys for SECONDS while redis-benchmark --cluster and a busy
# loop load the machine, and `admin move-slots` moves the slots of the checked keys from group
# to group back to back. Prints the checker's result (client errors other than redirects,
# longest write gap) and how many moves completed. Usage: scripts/slot_move_stress.sh [SECONDS]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
seconds="${1:-40}"
"$root/scripts/setup.sh"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/autocache-target}"
cargo build --release --quiet --manifest-path "$root/Cargo.toml" -p node
bin="$CARGO_TARGET_DIR/release/autocache"
work="$(mktemp -d)"
cleanup() {
    pkill -f "dev-cluster --nodes 5 --base-port 7200" || true
    jobs -p | xargs -r kill 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
# A cluster of an earlier run may still be stopping.
if pkill -f "dev-cluster --nodes 5 --base-port 7200"; then sleep 3; fi
"$bin" dev-cluster --nodes 5 --base-port 7200 --data-dir "$work/data" >"$work/cluster.log" 2>&1 &
for _ in $(seq 120); do grep -q "cluster ready" "$work/cluster.log" && break; sleep 0.5; done
grep -q "cluster ready" "$work/cluster.log" || { cat "$work/cluster.log"; exit 1; }

python3 "$root/node/tests/clients/redis_py_failover.py" 7200 "$seconds" >"$work/checker.out" 2>&1 &
checker=$!
timeout "$((seconds + 5))" bash -c 'while :; do :; done' &
timeout "$((seconds + 2))" redis-benchmark --cluster -p 7200 -t set,get -n 100000000 \
    -r 100000 -c 20 -q >/dev/null 2>&1 &
sleep 2
slots=$(for i in 0 1 2 3 4 5 6 7; do redis-cli -p 7200 cluster keyslot "failover:$i"; done)
moved=0 failed=0 round=0
end=$((SECONDS + seconds - 6))
while [ "$SECONDS" -lt "$end" ]; do
    for slot in $slots; do
        to=$(( (slot * 16 / 16384 + 1 + round % 3) % 16 ))
        out=$("$bin" admin --node 127.0.0.1:17200 move-slots "$slot" "$to" 2>&1) || true
        if [[ "$out" == *"moved to group"* ]]; then
            moved=$((moved + 1))
        else
            failed=$((failed + 1))
        fi
    done
    round=$((round + 1))
done
status=0
wait "$checker" || status=$?
grep -v DeprecationWarning "$work/checker.out" | grep -v "rc = RedisCluster" || true
echo "move-slots: $moved completed, $failed failed"
exit "$status"
