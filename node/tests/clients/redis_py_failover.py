"""redis-py's RedisCluster against a multi-node AutoCache cluster, through a node failure
(or any topology change the test makes meanwhile: nodes added and removed).

Writes increasing values to a set of keys for DURATION seconds while the test kills a node.
Every write is retried until it is acknowledged. Afterwards, every key must hold at least its
last acknowledged value (nothing acknowledged was lost) and at most its last attempted one.
Prints the longest time the client went without a successful write.

Usage: redis_py_failover.py PORT DURATION [MAX_ERRORS]
"""
import sys
import time

from redis.cluster import RedisCluster
from redis.exceptions import RedisError

port = int(sys.argv[1])
duration = float(sys.argv[2])
max_errors = int(sys.argv[3]) if len(sys.argv) > 3 else None
rc = RedisCluster(host="127.0.0.1", port=port, decode_responses=True,
                  cluster_error_retry_attempts=10, socket_timeout=2)
primaries = rc.get_primaries()
assert len(primaries) >= 3, primaries

keys = ["failover:%d" % i for i in range(40)]
acked = {k: 0 for k in keys}
last_acked = {k: time.time() for k in keys}
attempted = {k: 0 for k in keys}
errors = 0
longest_gap = 0.0
last_success = time.time()
deadline = time.time() + duration
n = 0
while time.time() < deadline:
    key = keys[n % len(keys)]
    value = attempted[key] + 1
    attempted[key] = value
    try:
        assert rc.set(key, value)
        acked[key] = value
        last_acked[key] = time.time()
        now = time.time()
        longest_gap = max(longest_gap, now - last_success)
        last_success = now
    except (RedisError, OSError) as e:
        errors += 1
        # What failed, for the test's output: redirects are followed by the client, so any
        # error here is one a user would see.
        if errors <= 20:
            print("error %.2fs in: SET %s: %s: %s" % (time.time() - (deadline - duration), key,
                  type(e).__name__, e), file=sys.stderr)
        time.sleep(0.05)
    n += 1

# Every key is written again after the failure: its group has a leader again.
end = time.time()
for key in keys:
    assert end - last_acked[key] < 4, "%s was last written %.1fs before the end" % (key, end - last_acked[key])

for key in keys:
    for attempt in range(100):
        try:
            got = int(rc.get(key))
            break
        except (RedisError, OSError):
            time.sleep(0.1)
    else:
        raise SystemExit("could not read %s after the failure" % key)
    assert acked[key] <= got <= attempted[key], (key, acked[key], got, attempted[key])

print("writes=%d errors=%d longest_gap=%.2fs" % (n, errors, longest_gap))
assert longest_gap < 10, "the cluster did not serve writes for %.1fs" % longest_gap
assert max_errors is None or errors <= max_errors, "%d errors, at most %d allowed" % (errors, max_errors)
print("failover: ok")
