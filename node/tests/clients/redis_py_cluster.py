"""redis-py's RedisCluster against an AutoCache node: topology discovery, keyed commands
routed by slot, multi-key commands within a hash tag, pipelines.

Usage: redis_py_cluster.py PORT
"""
import sys

from redis.cluster import RedisCluster

port = int(sys.argv[1])
rc = RedisCluster(host="127.0.0.1", port=port, decode_responses=True)
nodes = rc.get_nodes()
assert len(nodes) == 1 and nodes[0].port == port, nodes
for i in range(200):
    assert rc.set("key:%d" % i, "value:%d" % i)
for i in range(200):
    assert rc.get("key:%d" % i) == "value:%d" % i
assert rc.mset({"{user:1}:name": "ada", "{user:1}:lang": "rust"})
assert rc.mget("{user:1}:name", "{user:1}:lang") == ["ada", "rust"]
assert rc.keyslot("key:1") == rc.cluster_keyslot("key:1")
pipe = rc.pipeline()
for i in range(50):
    pipe.incr("counter")
assert pipe.execute()[-1] == 50
assert rc.cluster_countkeysinslot(rc.keyslot("counter")) >= 1
print("RedisCluster: ok")
