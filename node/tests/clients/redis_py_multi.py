"""redis-py's RedisCluster against a three-node AutoCache cluster: topology discovery with a
master per node, keyed commands routed by slot to every node, hash-tagged multi-key commands,
pipelines, and cross-slot refusal.

Usage: redis_py_multi.py PORT
"""
import sys

from redis.cluster import RedisCluster
from redis.exceptions import RedisClusterException, ResponseError

port = int(sys.argv[1])
rc = RedisCluster(host="127.0.0.1", port=port, decode_responses=True)
primaries = rc.get_primaries()
assert len(primaries) == 3, primaries
for i in range(300):
    assert rc.set("multi:%d" % i, "value:%d" % i)
for i in range(300):
    assert rc.get("multi:%d" % i) == "value:%d" % i
served = {rc.get_node_from_key("multi:%d" % i).port for i in range(300)}
assert len(served) == 3, served
assert rc.mset({"{user:7}:name": "ada", "{user:7}:lang": "rust"})
assert rc.mget("{user:7}:name", "{user:7}:lang") == ["ada", "rust"]
pipe = rc.pipeline()
for i in range(60):
    pipe.incr("{counter}:a")
assert pipe.execute()[-1] == 60
try:
    rc.execute_command("MSET", "a", "1", "b", "2")
    raise SystemExit("a cross-slot MSET was accepted")
except (ResponseError, RedisClusterException):
    pass
print("RedisCluster multi-node: ok")
