"""redis-py against the Tessera proxy: `redis.Redis` and `redis.cluster.RedisCluster`, each
exercising strings, hashes, lists, sets, sorted sets, pipelines, MULTI/EXEC on one slot, pub/sub,
scan_iter and blocking pops, with assertions. Exits non-zero on the first failed assertion.

Usage: python3 redis_py_clients.py PROXY_PORT   (run by e2e/tests/clients.rs)
"""

import sys
import threading
import time

import redis
from redis.cluster import RedisCluster

HOST = "127.0.0.1"
DEADLINE_S = 10.0  # bound on every wait for a message or a wake-up


def check_data_types(r, prefix):
    """Strings, hashes, lists, sets and sorted sets; `prefix` keeps the two clients apart."""
    k = lambda name: f"{prefix}:{name}"
    tag = "{" + prefix + "-set}"
    for key in [k(n) for n in ("s", "n", "ex", "h", "l", "z")] + [f"{tag}a", f"{tag}b"]:
        r.delete(key)  # one key per call: the cluster client refuses cross-slot DEL
    assert r.set(k("s"), "v1") is True
    assert r.get(k("s")) == b"v1"
    assert r.append(k("s"), "+") == 3
    assert r.incr(k("n")) == 1 and r.incrby(k("n"), 41) == 42
    assert r.set(k("ex"), "x", ex=100) and 0 < r.ttl(k("ex")) <= 100
    assert r.set(k("s"), "other", nx=True) is None
    assert r.getrange(k("s"), 0, 1) == b"v1"
    assert r.strlen(k("s")) == 3

    assert r.hset(k("h"), mapping={"a": "1", "b": "2"}) == 2
    assert r.hgetall(k("h")) == {b"a": b"1", b"b": b"2"}
    assert r.hincrby(k("h"), "a", 5) == 6
    assert sorted(r.hkeys(k("h"))) == [b"a", b"b"]
    assert r.hdel(k("h"), "b") == 1 and r.hlen(k("h")) == 1

    assert r.rpush(k("l"), "a", "b", "c") == 3
    assert r.lpush(k("l"), "z") == 4
    assert r.lrange(k("l"), 0, -1) == [b"z", b"a", b"b", b"c"]
    assert r.lpop(k("l")) == b"z" and r.rpop(k("l")) == b"c"
    assert r.llen(k("l")) == 2

    assert r.sadd(f"{tag}a", "x", "y", "z") == 3
    assert r.sadd(f"{tag}b", "y", "z", "w") == 3
    assert r.smembers(f"{tag}a") == {b"x", b"y", b"z"}
    assert r.sinter(f"{tag}a", f"{tag}b") == {b"y", b"z"}
    assert r.sismember(f"{tag}a", "x") and not r.sismember(f"{tag}a", "w")
    assert r.scard(f"{tag}b") == 3

    assert r.zadd(k("z"), {"one": 1, "two": 2, "three": 3}) == 3
    assert r.zrange(k("z"), 0, -1, withscores=True) == [(b"one", 1.0), (b"two", 2.0), (b"three", 3.0)]
    assert r.zincrby(k("z"), 10, "one") == 11.0
    assert r.zrevrange(k("z"), 0, 0) == [b"one"]
    assert r.zscore(k("z"), "two") == 2.0 and r.zrank(k("z"), "three") == 1
    assert r.zcard(k("z")) == 3

    assert r.exists(k("s"), k("h"), k("missing")) == 2
    assert r.delete(k("s"), k("n")) == 2
    assert r.get(k("s")) is None
    assert r.type(k("z")) == b"zset"


def check_pipeline(r, prefix):
    """A pipeline over many slots comes back in order."""
    p = r.pipeline(transaction=False)
    for i in range(50):
        p.set(f"{prefix}:p:{i}", i)
    for i in range(50):
        p.get(f"{prefix}:p:{i}")
    replies = p.execute()
    assert replies[:50] == [True] * 50, replies[:50]
    assert replies[50:] == [str(i).encode() for i in range(50)], replies[50:]


def check_transaction(r, port, prefix):
    """MULTI/EXEC through pipeline(transaction=True), every key in one slot."""
    tag = "{" + prefix + "-tx}"
    r.delete(f"{tag}counter", f"{tag}a")
    p = r.pipeline(transaction=True)
    p.set(f"{tag}a", "1")
    p.incr(f"{tag}counter")
    p.incr(f"{tag}counter")
    p.get(f"{tag}a")
    # redis-py's cluster transaction pipeline leaves SET's reply raw (b"OK"): the same against a
    # real Redis Cluster (checked with redis-py 8.1.0 and three redis-server 7.0 nodes).
    set_reply = b"OK" if isinstance(r, RedisCluster) else True
    assert p.execute() == [set_reply, 1, 2, b"1"]
    # WATCH: a write by another connection between WATCH and EXEC aborts the transaction.
    other = redis.Redis(host=HOST, port=port)
    with r.pipeline(transaction=True) as p:
        p.watch(f"{tag}counter")
        assert p.get(f"{tag}counter") == b"2"
        other.set(f"{tag}counter", "100")
        p.multi()
        p.incr(f"{tag}counter")
        try:
            p.execute()
            raise AssertionError("EXEC after a watched key changed must abort")
        except redis.WatchError:
            pass
    assert r.get(f"{tag}counter") == b"100"
    other.close()


def check_pubsub(subscriber_client, publisher_client, channel):
    sub = subscriber_client.pubsub()
    sub.subscribe(channel)
    first = wait_message(sub)
    assert first["type"] == "subscribe" and first["channel"] == channel.encode(), first
    deadline = time.monotonic() + DEADLINE_S
    delivered = 0
    # PUBLISH answers how many subscribers got it: wait until ours is counted (bounded).
    while delivered < 1:
        assert time.monotonic() < deadline, "subscriber never counted by PUBLISH"
        delivered = publisher_client.publish(channel, "hello")
    message = wait_message(sub)
    assert message["type"] == "message" and message["data"] == b"hello", message
    sub.unsubscribe(channel)
    sub.close()


def wait_message(sub):
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        message = sub.get_message(timeout=0.5)
        if message is not None:
            return message
    raise AssertionError("no pub/sub message within the deadline")


def check_scan_iter(r, prefix):
    keys = {f"{prefix}:scan:{i}".encode() for i in range(300)}
    for key in keys:
        r.set(key, "1")
    found = list(r.scan_iter(match=f"{prefix}:scan:*", count=50))
    assert len(found) == len(set(found)), "a key came back twice"
    assert set(found) == keys, (len(found), len(keys))


def check_blocking_pops(r, pusher, prefix):
    key = f"{prefix}:queue"
    r.delete(key)
    start = time.monotonic()
    assert r.blpop([key], timeout=1) is None
    assert 0.9 <= time.monotonic() - start < DEADLINE_S
    # A push through another connection wakes a blocked BLPOP.
    timer = threading.Timer(0.3, lambda: pusher.rpush(key, "job"))
    timer.start()
    start = time.monotonic()
    assert r.blpop([key], timeout=DEADLINE_S) == (key.encode(), b"job")
    assert time.monotonic() - start < DEADLINE_S
    timer.join()
    pusher.rpush(key, "b")
    assert r.brpop([key], timeout=1) == (key.encode(), b"b")
    r.delete(f"{prefix}:zq")
    pusher.zadd(f"{prefix}:zq", {"m": 5})
    assert r.bzpopmin(f"{prefix}:zq", timeout=1) == (f"{prefix}:zq".encode(), b"m", 5.0)


def plain(port):
    r = redis.Redis(host=HOST, port=port, socket_timeout=DEADLINE_S + 5)
    other = redis.Redis(host=HOST, port=port, socket_timeout=DEADLINE_S + 5)
    assert r.ping() is True
    check_data_types(r, "py-plain")
    check_pipeline(r, "py-plain")
    check_transaction(r, port, "py-plain")
    check_pubsub(r, other, "py-plain-news")
    check_scan_iter(r, "py-plain")
    check_blocking_pops(r, other, "py-plain")
    # Cross-slot multi-key commands are split and merged by the proxy.
    assert r.mset({"py-plain:m1": "1", "py-plain:m2": "2", "py-plain:m3": "3"}) is True
    assert r.mget("py-plain:m1", "py-plain:m2", "py-plain:m3", "nope") == [b"1", b"2", b"3", None]
    assert r.delete("py-plain:m1", "py-plain:m2", "py-plain:m3") == 3
    r.close()
    other.close()


def cluster(port):
    rc = RedisCluster(host=HOST, port=port, socket_timeout=DEADLINE_S + 5)
    other = RedisCluster(host=HOST, port=port, socket_timeout=DEADLINE_S + 5)
    # Every node the cluster client knows is the proxy: it never leaves it.
    nodes = rc.get_nodes()
    assert nodes and all((n.host, n.port) == (HOST, port) for n in nodes), nodes
    slots = rc.cluster_slots()
    assert len(slots) >= 2, slots  # one virtual master per real master
    assert all(v["primary"] == (HOST, port) for v in slots.values()), slots
    assert rc.ping() is True
    check_data_types(rc, "py-cluster")
    check_pipeline(rc, "py-cluster")
    check_transaction(rc, port, "py-cluster")
    check_pubsub(rc, other, "py-cluster-news")
    check_scan_iter(rc, "py-cluster")
    check_blocking_pops(rc, other, "py-cluster")
    assert rc.mset_nonatomic({"py-cluster:m1": "1", "py-cluster:m2": "2"}) is not None
    assert rc.mget_nonatomic(["py-cluster:m1", "py-cluster:m2", "nope"]) == [b"1", b"2", None]
    assert rc.keyslot("somekey") == 11058
    rc.close()
    other.close()


def main():
    port = int(sys.argv[1])
    print(f"redis-py {redis.__version__} against 127.0.0.1:{port}")
    plain(port)
    print("redis.Redis: ok")
    cluster(port)
    print("redis.cluster.RedisCluster: ok")


if __name__ == "__main__":
    main()
