#!/usr/bin/env python3
"""redis-py (>= 5) speaking RESP3 to AutoCache: the handshake, typed replies, pipelines,
transactions, pub/sub push messages and blocking pops, as an application would use them."""
import sys
import threading
import time

import redis

port = int(sys.argv[1])
r = redis.Redis(host="127.0.0.1", port=port, protocol=3, decode_responses=True)

# The handshake: redis-py sends HELLO 3 (and CLIENT SETINFO) on connect.
assert r.ping() is True
hello = r.execute_command("HELLO", "3")
assert hello["proto"] == 3 and hello["server"] == "redis", hello
assert hello["version"].startswith("7."), hello

# Strings, expiry, counters.
assert r.set("greeting", "hello", ex=60) is True
assert r.get("greeting") == "hello"
assert 0 < r.ttl("greeting") <= 60
assert r.incrby("n", 5) == 5
assert r.incrbyfloat("f", 0.5) == 0.5
assert r.mget("greeting", "missing") == ["hello", None]

# RESP3 types: maps, sets, doubles, nulls.
r.hset("user:1", mapping={"name": "ada", "lang": "rust"})
assert r.hgetall("user:1") == {"name": "ada", "lang": "rust"}
r.sadd("tags", "a", "b", "c")
assert r.smembers("tags") == {"a", "b", "c"}
r.zadd("board", {"alice": 10, "bob": 20.5})
assert r.zscore("board", "bob") == 20.5
assert r.zrange("board", 0, -1, withscores=True) == [["alice", 10.0], ["bob", 20.5]] or \
    r.zrange("board", 0, -1, withscores=True) == [("alice", 10.0), ("bob", 20.5)]
assert r.zincrby("board", 1.5, "alice") == 11.5
assert r.hget("user:1", "missing") is None

# Lists and a blocking pop woken by another connection.
result = {}


def waiter():
    w = redis.Redis(host="127.0.0.1", port=port, protocol=3, decode_responses=True)
    result["pop"] = w.blpop(["jobs"], timeout=5)


t = threading.Thread(target=waiter)
t.start()
time.sleep(0.2)
r.rpush("jobs", "build")
t.join(timeout=10)
assert result["pop"] in (["jobs", "build"], ("jobs", "build")), result

# Pipelines and transactions.
pipe = r.pipeline(transaction=False)
for i in range(100):
    pipe.set("p%d" % i, i)
pipe.get("p42")
assert pipe.execute()[-1] == "42"
with r.pipeline(transaction=True) as tx:
    tx.incr("n")
    tx.incr("n")
    assert tx.execute() == [6, 7]

# Optimistic locking with WATCH.
with r.pipeline() as tx:
    tx.watch("n")
    current = int(tx.get("n"))
    tx.multi()
    tx.set("n", current * 2)
    tx.execute()
assert r.get("n") == "14"

# Pub/sub with RESP3 push messages.
p = r.pubsub()
p.subscribe("events")
deadline = time.time() + 5
confirmed = None
while time.time() < deadline and confirmed is None:
    confirmed = p.get_message(timeout=0.5)
assert confirmed and confirmed["type"] == "subscribe", confirmed
assert r.publish("events", "deployed") == 1
message = None
while time.time() < deadline and message is None:
    message = p.get_message(timeout=0.5)
assert message["type"] == "message" and message["data"] == "deployed", message
p.close()

# Errors surface as exceptions with Redis's text.
try:
    r.lpush("greeting", "x")
    raise AssertionError("WRONGTYPE expected")
except redis.ResponseError as e:
    assert str(e).startswith("WRONGTYPE"), e

# CLIENT SETINFO from the handshake shows up in CLIENT INFO.
info = r.client_info()
assert info["lib-name"].startswith("redis-py"), info

print("redis-py %s RESP3: ok" % redis.__version__)
