#!/usr/bin/env python3
"""Loads keys and measures one rebalance for bench/reshard.sh, and summarizes the rounds (Python 3
standard library only; the cluster client is bench/failover.py's).

    reshard.py load    --seeds H:P,... [--password S] --keys N --value-size B
    reshard.py measure --system NAME --seeds H:P,... [--password S] --keys N --new-node H:P
                       [--node-password S] --clients C --baseline S --results FILE --label TEXT
                       -- MOVE COMMAND...
    reshard.py summary --results FILE --out FILE.md

load: SETs key:0 .. key:N-1 (values of B bytes) in pipelines of 1000 per node, grouped by the slot
map from CLUSTER SLOTS (for Tessera the seed is the proxy, which names itself for every slot).

measure: starts C client processes, each a loop of one command at a time (GET or SET, half each,
on random keys of the loaded ones) through the same cluster-aware client as bench/failover.py
(MOVED/ASK followed; an error reply such as TRYAGAIN is counted and retried after 1 ms), measures
their ops/s over --baseline seconds, then runs MOVE COMMAND (the rebalance) while they go on and
measures their ops/s until it exits, and its wall time. Keys moved is DBSIZE of --new-node
afterwards; every key must still be there (the DBSIZEs of all masters sum to N). Appends one JSON
line to --results.
"""

import argparse
import json
import multiprocessing
import random
import statistics
import subprocess
import sys
import time

import failover
from failover import ClusterClient, Conn, ReplyError, key_slot

PIPELINE = 1000
ClusterClient.refresh_on_moved = False  # a reshard moves slots one by one
failover.SOCKET_TIMEOUT = 5.0  # a client op slower than this is an error; the default is 0.2 s


def addr(text):
    host, _, port = text.rpartition(":")
    return (host, int(port))


def load(args):
    seeds = [addr(s) for s in args.seeds.split(",")]
    client = ClusterClient(seeds, args.password)
    value = b"x" * args.value_size
    by_node = {}
    started = time.monotonic()
    for i in range(args.keys):
        key = b"key:%d" % i
        node = client.slots[key_slot(key)]
        batch = by_node.setdefault(node, [])
        batch.append(key)
        if len(batch) == PIPELINE:
            send_sets(client, node, batch, value)
            batch.clear()
    for node, batch in by_node.items():
        if batch:
            send_sets(client, node, batch, value)
    took = time.monotonic() - started
    print(f"loaded {args.keys} keys of {args.value_size} bytes in {took:.1f} s")


def send_sets(client, node, keys, value):
    conn = client._conn(node)
    out = []
    for key in keys:
        out.append(b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(key), key, len(value), value))
    conn.sock.sendall(b"".join(out))
    for _ in keys:
        reply = conn._read()
        if isinstance(reply, ReplyError):
            raise reply


def client_loop(seeds, password, keys, counter, errors, halt):
    """One client process: GET/SET on random keys until `halt`; `counter` counts the successes."""
    random.seed()
    client = ClusterClient(seeds, password)
    ok = 0
    while not halt.is_set():
        key = b"key:%d" % random.randrange(keys)
        try:
            if ok & 1:
                client.call(key, "GET", key)
            else:
                client.call(key, "SET", key, b"y" * 16)
        except (OSError, ReplyError):
            with errors.get_lock():
                errors.value += 1
            time.sleep(0.001)
            continue
        ok += 1
        if ok % 64 == 0:
            with counter.get_lock():
                counter.value += 64


def dbsize(node, password):
    conn = Conn(node, timeout=5.0, password=password)
    try:
        return conn.call("DBSIZE")
    finally:
        conn.close()


def measure(args):
    seeds = [addr(s) for s in args.seeds.split(",")]
    counter = multiprocessing.Value("q", 0)
    errors = multiprocessing.Value("q", 0)
    halt = multiprocessing.Event()
    procs = [
        multiprocessing.Process(target=client_loop, args=(seeds, args.password, args.keys, counter, errors, halt))
        for _ in range(args.clients)
    ]
    for p in procs:
        p.start()
    try:
        time.sleep(1.0)  # warm-up: connections and slot maps
        c0, t0 = counter.value, time.monotonic()
        time.sleep(args.baseline)
        c1, t1 = counter.value, time.monotonic()
        e1 = errors.value
        move = subprocess.run(args.move, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=args.max_move)
        c2, t2 = counter.value, time.monotonic()
        e2 = errors.value
    finally:
        halt.set()
        for p in procs:
            p.join(10)
            if p.is_alive():
                p.terminate()
    sys.stdout.write(move.stdout.decode(errors="replace")[-4000:])
    if move.returncode != 0:
        raise SystemExit(f"the move command failed with status {move.returncode}")
    moved = dbsize(addr(args.new_node), args.node_password)
    masters = [addr(s) for s in args.masters.split(",")]
    total = sum(dbsize(m, args.node_password) for m in masters)
    base_ops = (c1 - c0) / (t1 - t0)
    during_ops = (c2 - c1) / (t2 - t1)
    result = {
        "label": args.label,
        "system": args.system,
        "keys": args.keys,
        "moved": moved,
        "move_s": t2 - t1,
        "keys_per_s": moved / (t2 - t1),
        "base_ops": base_ops,
        "during_ops": during_ops,
        "loss_pct": 100.0 * (1 - during_ops / base_ops) if base_ops else None,
        "client_errors": e2 - e1,
        "keys_after": total,
    }
    with open(args.results, "a") as f:
        f.write(json.dumps(result) + "\n")
    print(
        f"{args.system}: moved {moved} keys in {t2 - t1:.1f} s ({result['keys_per_s']:.0f} keys/s); "
        f"client {base_ops:.0f} ops/s before, {during_ops:.0f} during ({result['loss_pct']:.1f}% lost, "
        f"{e2 - e1} error replies); {total} keys after"
    )
    if total != args.keys:
        raise SystemExit(f"keys lost or duplicated: {total} after the move, {args.keys} before")


def summary(args):
    rows = [json.loads(line) for line in open(args.results) if line.strip()]
    lines = [
        "| system | rounds | keys moved | move time | keys/s | client ops/s before | client ops/s during | client loss | error replies |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for system in ("tessera", "redis-cluster"):
        mine = [r for r in rows if r["system"] == system]
        if not mine:
            continue
        med = lambda k: statistics.median(r[k] for r in mine)  # noqa: E731
        lines.append(
            f"| {system} | {len(mine)} | {med('moved'):.0f} | {med('move_s'):.1f} s | {med('keys_per_s'):,.0f} "
            f"| {med('base_ops'):,.0f} | {med('during_ops'):,.0f} | {med('loss_pct'):.1f}% | {med('client_errors'):.0f} |"
        )
    text = "\n".join(lines) + "\n"
    with open(args.out, "w") as f:
        f.write(text)
    print(text, end="")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("load")
    p.add_argument("--seeds", required=True)
    p.add_argument("--password")
    p.add_argument("--keys", type=int, required=True)
    p.add_argument("--value-size", type=int, required=True)
    p = sub.add_parser("measure")
    p.add_argument("--system", required=True)
    p.add_argument("--seeds", required=True)
    p.add_argument("--password")
    p.add_argument("--masters", required=True, help="H:P,... of every master, the new one included")
    p.add_argument("--new-node", required=True)
    p.add_argument("--node-password")
    p.add_argument("--keys", type=int, required=True)
    p.add_argument("--clients", type=int, default=2)
    p.add_argument("--baseline", type=float, default=5.0)
    p.add_argument("--max-move", type=float, default=600.0)
    p.add_argument("--results", required=True)
    p.add_argument("--label", default="")
    p.add_argument("move", nargs="+")
    p = sub.add_parser("summary")
    p.add_argument("--results", required=True)
    p.add_argument("--out", required=True)
    args = parser.parse_args()
    {"load": load, "measure": measure, "summary": summary}[args.cmd](args)


if __name__ == "__main__":
    main()
