#!/usr/bin/env python3
"""Regenerates proto/src/command/table.rs from a real redis-server's COMMAND and COMMAND DOCS.

Usage: start a redis-server 7.0 (e.g. `redis-server --port 23101 --save '' --appendonly no`), then
    python3 proto/tools/gen_command_table.py 23101 > proto/src/command/table.rs
Redis gives arity, flags, key positions, key specs, ACL categories, tips and docs; Tessera adds
what a command is to Tessera, written here once: whether a shard node implements it (`on_node`) and
how the proxy routes it (`routing`). The proxy and the nodes read these from the table instead of
keeping lists of their own.
"""
import socket
import sys

# The commands a shard node implements (each has a handler in shard-node's `dispatch` tables; a
# unit test there checks the two agree). A container's subcommands follow it. Anything else is not
# advertised by COMMAND and answers "unknown command", on a node and through the proxy.
ON_NODE = {
    "append", "asking", "auth", "bgrewriteaof", "bitcount", "bitfield", "bitfield_ro", "bitop",
    "bitpos", "blmove", "blmpop", "blpop", "brpop", "brpoplpush", "bzmpop", "bzpopmax", "bzpopmin",
    "client", "cluster", "command", "config", "copy", "dbsize", "decr", "decrby", "del", "discard",
    "dump", "echo", "exec", "exists", "expire", "expireat", "expiretime", "flushall", "flushdb",
    "geoadd", "geodist", "geohash", "geopos", "georadius", "georadius_ro", "georadiusbymember",
    "georadiusbymember_ro", "geosearch", "geosearchstore", "get", "getbit", "getdel", "getex",
    "getrange", "getset", "hdel", "hello", "hexists", "hget", "hgetall", "hincrby", "hincrbyfloat",
    "hkeys", "hlen", "hmget", "hmset", "hrandfield", "hscan", "hset", "hsetnx", "hstrlen", "hvals",
    "incr", "incrby", "incrbyfloat", "info", "keys", "lcs", "lindex", "linsert", "llen", "lmove",
    "lmpop", "lpop", "lpos", "lpush", "lpushx", "lrange", "lrem", "lset", "ltrim", "memory",
    "mget", "migrate", "mset", "msetnx", "multi", "object", "persist", "pexpire", "pexpireat",
    "pexpiretime", "pfadd", "pfcount", "pfmerge", "ping", "psetex", "psubscribe", "pttl",
    "publish", "pubsub", "punsubscribe", "quit", "randomkey", "readonly", "readwrite", "rename",
    "renamenx", "replicaof", "reset", "restore", "restore-asking", "role", "rpop", "rpoplpush",
    "rpush", "rpushx", "sadd", "scan", "scard", "sdiff", "sdiffstore", "select", "set", "setbit",
    "setex", "setnx", "setrange", "sinter", "sintercard", "sinterstore", "sismember", "slaveof",
    "smembers", "smismember", "smove", "sort", "sort_ro", "spop", "spublish", "srandmember",
    "srem", "sscan", "ssubscribe", "strlen", "subscribe", "substr", "sunion", "sunionstore",
    "sunsubscribe", "touch", "ttl", "type", "unlink", "unsubscribe", "unwatch", "wait", "watch",
    "xack", "xadd", "xautoclaim", "xclaim", "xdel", "xgroup", "xinfo", "xlen", "xpending",
    "xrange", "xread", "xreadgroup", "xrevrange", "xsetid", "xtrim", "zadd", "zcard", "zcount",
    "zdiff", "zdiffstore", "zincrby", "zinter", "zintercard", "zinterstore", "zlexcount", "zmpop",
    "zmscore", "zpopmax", "zpopmin", "zrandmember", "zrange", "zrangebylex", "zrangebyscore",
    "zrangestore", "zrank", "zrem", "zremrangebylex", "zremrangebyrank", "zremrangebyscore",
    "zrevrange", "zrevrangebylex", "zrevrangebyscore", "zrevrank", "zscan", "zscore", "zunion",
    "zunionstore",
}

# How the proxy handles each command (Routing::Keyed for everything not listed). A full name
# (`container|sub`) decides before its container's name.
# Split per slot, with how the parts' replies merge.
SPLIT = {
    "mget": "Values", "mset": "AllOk", "del": "Sum", "unlink": "Sum", "exists": "Sum",
    "touch": "Sum",
}
# Sent to every master, with how the replies combine.
FAN_OUT = {
    "dbsize": "DbSize", "keys": "Keys", "scan": "Scan", "randomkey": "RandomKey",
    "flushall": "Flush", "flushdb": "Flush", "pubsub|channels": "PubSub",
    "pubsub|numpat": "PubSub", "pubsub|numsub": "PubSub", "pubsub|shardchannels": "PubSub",
    "pubsub|shardnumsub": "PubSub",
}
# Answered by the proxy itself (and advertised by its COMMAND even where no node implements it).
LOCAL = {
    "ping", "echo", "quit", "hello", "auth", "select", "client", "command", "config", "info",
    "cluster", "readonly", "readwrite", "asking", "reset", "multi", "exec", "discard", "watch",
    "unwatch", "subscribe", "psubscribe", "unsubscribe", "punsubscribe", "ssubscribe",
    "sunsubscribe", "acl", "time", "wait",
}
# Refused by the proxy with an honest "not supported" error: it cannot serve them correctly yet.
REFUSED = {"client|pause", "client|unpause", "client|caching", "client|reply", "client|unblock",
           # Per-node replication commands: through the proxy they would reach one arbitrary master
           # (ROLE / REPLICAOF name one node).
           "role", "replicaof", "slaveof"}

# Subcommands of later Redis versions that clients send on connect and the issues require, in
# COMMAND INFO's shape, with their docs. redis-py sends CLIENT SETINFO (Redis 7.2).
EXTRA_SUBCOMMANDS = {
    "client": [
        (["client|setinfo", 4, ["noscript", "loading", "stale"], 0, 0, 0, ["@slow", "@connection"], [], [], []],
         {"summary": "Set client or connection specific info", "since": "7.2.0", "group": "connection",
          "complexity": "O(1)"}),
    ],
}


def read_reply(f):
    line = f.readline()
    if not line:
        raise EOFError
    tag, rest = line[:1], line[1:-2]
    if tag in (b"+", b"-"):
        return rest.decode()
    if tag == b":":
        return int(rest)
    if tag == b"$":
        n = int(rest)
        if n < 0:
            return None
        data = f.read(n + 2)[:-2]
        return data.decode()
    if tag == b"*":
        n = int(rest)
        return None if n < 0 else [read_reply(f) for _ in range(n)]
    raise ValueError(line)


def call(sock, f, *args):
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = a.encode()
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    sock.sendall(out)
    return read_reply(f)


def pairs(flat):
    return dict(zip(flat[0::2], flat[1::2]))


def rust_str(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def str_list(items):
    return "&[" + ", ".join(rust_str(i) for i in items) + "]"


def key_spec(spec):
    spec = pairs(spec)
    bs = pairs(spec["begin_search"])
    fk = pairs(spec["find_keys"])
    if bs["type"] == "index":
        begin = "Begin::Index(%d)" % pairs(bs["spec"])["index"]
    elif bs["type"] == "keyword":
        s = pairs(bs["spec"])
        begin = "Begin::Keyword { keyword: %s, start_from: %d }" % (rust_str(s["keyword"]), s["startfrom"])
    else:
        begin = "Begin::Unknown"
    if fk["type"] == "range":
        s = pairs(fk["spec"])
        find = "Find::Range { last_key: %d, key_step: %d, limit: %d }" % (s["lastkey"], s["keystep"], s["limit"])
    elif fk["type"] == "keynum":
        s = pairs(fk["spec"])
        find = "Find::KeyNum { key_num_index: %d, first_key: %d, key_step: %d }" % (
            s["keynumidx"], s["firstkey"], s["keystep"])
    else:
        find = "Find::Unknown"
    return "KeySpec { begin: %s, find: %s, flags: %s }" % (begin, find, str_list(spec["flags"]))


def entry(info, docs, indent):
    name, arity, flags, first, last, step, acl, tips, specs, subs = info
    doc = pairs(docs.get(name, []))
    top = name.split("|")[0]
    if name in REFUSED:
        routing = "Refused"
    elif top in SPLIT:
        routing = "Split(Merge::%s)" % SPLIT[top]
    elif name in FAN_OUT or top in FAN_OUT:
        routing = "FanOut(FanOut::%s)" % FAN_OUT.get(name, FAN_OUT.get(top))
    elif top in LOCAL:
        routing = "Local"
    else:
        routing = "Keyed"
    pad = " " * indent
    lines = [
        pad + "CommandSpec {",
        pad + "    name: %s, arity: %d, first_key: %d, last_key: %d, step: %d,"
        % (rust_str(name), arity, first, last, step),
        pad + "    on_node: %s, routing: Routing::%s," % ("true" if top in ON_NODE else "false", routing),
        pad + "    flags: %s," % str_list(flags),
        pad + "    acl_categories: %s," % str_list(a.lstrip("@") for a in acl),
        pad + "    tips: %s," % str_list(tips),
    ]
    if specs:
        lines.append(pad + "    key_specs: &[")
        for s in specs:
            lines.append(pad + "        " + key_spec(s) + ",")
        lines.append(pad + "    ],")
    else:
        lines.append(pad + "    key_specs: &[],")
    lines.append(pad + "    summary: %s," % rust_str(doc.get("summary", "")))
    lines.append(pad + "    group: %s, since: %s, complexity: %s,"
                 % (rust_str(doc.get("group", "")), rust_str(doc.get("since", "")),
                    rust_str(doc.get("complexity", ""))))
    if subs:
        sub_docs = pairs(doc.get("subcommands", []))
        lines.append(pad + "    subcommands: &[")
        for sub in sorted(subs, key=lambda s: s[0]):
            lines.extend(entry(sub, sub_docs, indent + 8))
        lines.append(pad + "    ],")
    else:
        lines.append(pad + "    subcommands: &[],")
    lines.append(pad + "},")
    return lines


def main():
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 6379
    sock = socket.create_connection(("127.0.0.1", port))
    f = sock.makefile("rb")
    version = pairs(call(sock, f, "HELLO", "2"))["version"]
    infos = sorted(call(sock, f, "COMMAND"), key=lambda c: c[0])
    docs = pairs(call(sock, f, "COMMAND", "DOCS"))
    for info in infos:
        for sub_info, sub_doc in EXTRA_SUBCOMMANDS.get(info[0], []):
            if all(s[0] != sub_info[0] for s in info[9]):
                info[9].append(sub_info)
                doc = pairs(docs[info[0]])
                subs = doc.setdefault("subcommands", [])
                subs.extend([sub_info[0], [x for kv in sub_doc.items() for x in kv]])
                docs[info[0]] = [x for kv in doc.items() for x in kv]
    out = [
        "//! The command table, generated by `proto/tools/gen_command_table.py` from redis-server %s's" % version,
        "//! COMMAND and COMMAND DOCS (do not edit by hand: change the script and regenerate). Sorted by",
        "//! name, so `lookup` can binary-search it.",
        "",
        "use super::{Begin, CommandSpec, FanOut, Find, KeySpec, Merge, Routing};",
        "",
        "#[rustfmt::skip]",
        "pub(super) static COMMANDS: &[CommandSpec] = &[",
    ]
    for info in infos:
        out.extend(entry(info, docs, 4))
    out.append("];")
    print("\n".join(out))


if __name__ == "__main__":
    main()
