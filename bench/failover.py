#!/usr/bin/env python3
"""Measures one failover for bench/failover.sh and summarizes the runs (Python 3 standard library only).

    failover.py measure --system NAME --nodes PORTS [--writers PORT] --pids PORT=PID,... --fault kill|stop
                        --node-timeout MS --results FILE [--password SECRET] [--socket-timeout MS]
                        [--max-wait S] [--label TEXT]
    failover.py summary --results FILE --out FILE.md

measure: waits until the cluster on --nodes is healthy (every node agrees on three masters with one
connected replica each, cluster_state:ok, each master's WAIT 1 answers 1), picks the master that
serves slot 0 as the victim, starts two writers, sends the victim SIGKILL or SIGSTOP, and appends one
JSON line to --results:
  - the lost-slots writer SETs keys of the victim's slots in a tight loop; resumed_s is the time from
    the signal to the end of the first successful SET sent after the signal and after a SET that
    failed after the signal (one in flight at the signal may fail later);
  - the other-slots writer SETs keys of the other masters' slots; other_errors counts its SETs that
    failed from the signal until 1 s after the lost slots resumed, other_gap_s is the longest time
    without a successful SET in that window.
A SIGSTOPped victim gets SIGCONT once the measurement is over.

Both writers are the same cluster-aware client: the slot map from CLUSTER SLOTS, refreshed on MOVED,
on any error reply and on connection failures and timeouts; MOVED/ASK followed at once; a socket
timeout of 200 ms (--socket-timeout; a timed-out connection is closed, the next request goes on a
new one); after a failure the next SET follows a 5 ms pause, after a success at once. For Tessera the writers' only seed is the proxy
(--writers), whose CLUSTER SLOTS names the proxy for every slot; for Redis Cluster the seeds are the
nodes themselves.
"""

import argparse
import json
import os
import signal
import socket
import statistics
import sys
import threading
import time

SOCKET_TIMEOUT = 0.2  # s; --socket-timeout changes it for the writers
FAILURE_PAUSE = 0.005
TAIL = 1.0  # how long after the lost slots resume the other-slots writer is still watched
WARMUP = 1.0  # error-free writing on both writers before the signal
KEYS_PER_WRITER = 100


# --- slots ----------------------------------------------------------------------------------------

def _crc16_table():
    table = []
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
        table.append(crc & 0xFFFF)
    return table


CRC16_TABLE = _crc16_table()


def key_slot(key: bytes) -> int:
    """Redis Cluster's hash slot: CRC16 (XMODEM) of the key or of its {hash tag}, mod 16384."""
    start = key.find(b"{")
    if start >= 0:
        end = key.find(b"}", start + 1)
        if end > start + 1:
            key = key[start + 1:end]
    crc = 0
    for byte in key:
        crc = ((crc << 8) & 0xFFFF) ^ CRC16_TABLE[((crc >> 8) ^ byte) & 0xFF]
    return crc % 16384


# --- RESP -----------------------------------------------------------------------------------------

class ReplyError(Exception):
    """An error reply (-ERR ..., -MOVED ..., -CLUSTERDOWN ...)."""


class Conn:
    """One RESP connection with a socket timeout on connect and on every read."""

    def __init__(self, addr, timeout=None, password=None):
        self.sock = socket.create_connection(addr, timeout=timeout or SOCKET_TIMEOUT)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        if password:
            self.call("AUTH", password)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def call(self, *args):
        out = [b"*%d\r\n" % len(args)]
        for arg in args:
            arg = arg if isinstance(arg, bytes) else str(arg).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(arg), arg))
        self.sock.sendall(b"".join(out))
        reply = self._read()
        if isinstance(reply, ReplyError):
            raise reply
        return reply

    def _line(self):
        while True:
            end = self.buf.find(b"\r\n")
            if end >= 0:
                line = bytes(self.buf[:end])
                del self.buf[:end + 2]
                return line
            self._fill()

    def _exact(self, n):
        while len(self.buf) < n + 2:
            self._fill()
        data = bytes(self.buf[:n])
        del self.buf[:n + 2]
        return data

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("connection closed by the server")
        self.buf += chunk

    def _read(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind in (b"+", b"_"):
            return rest.decode()
        if kind == b"-":
            return ReplyError(rest.decode(errors="replace"))
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self._exact(n)
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self._read() for _ in range(n)]
        raise ConnectionError(f"unexpected reply line {line[:40]!r}")


def failure_kind(exc):
    """A short name for what went wrong: the error reply's first word, or the socket failure."""
    if isinstance(exc, ReplyError):
        return str(exc).split(" ", 1)[0] or "ERR"
    if isinstance(exc, socket.timeout):
        return "timeout"
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    if isinstance(exc, ConnectionResetError):
        return "reset"
    if isinstance(exc, ConnectionError):
        return "closed"
    return type(exc).__name__


# --- the cluster client both writers use -------------------------------------------------------------

class ClusterClient:
    """A minimal cluster-aware client, as the common Redis Cluster clients behave."""

    # Whether a MOVED reloads the whole slot map (after a failover many slots moved at once) or
    # only corrects the slot it was about (a reshard moves slots one by one).
    refresh_on_moved = True

    def __init__(self, seeds, password=None):
        self.seeds = list(seeds)
        self.password = password
        self.slots = [None] * 16384
        self.conns = {}
        self.suspects = {}  # addr -> when it last failed at the socket level
        self.refresh()

    def _conn(self, addr):
        conn = self.conns.get(addr)
        if conn is None:
            conn = self.conns[addr] = Conn(addr, password=self.password)
        return conn

    def _drop(self, addr):
        conn = self.conns.pop(addr, None)
        if conn is not None:
            conn.close()

    def refresh(self, avoid=None, prefer=None):
        """Reloads the slot map from the first node that answers CLUSTER SLOTS: `prefer` (a node
        that just answered) first, then the known nodes and the seeds, those that failed to answer
        in the last second (and `avoid`) last."""
        now = time.monotonic()
        if avoid is not None:
            self.suspects[avoid] = now
        candidates = [prefer] if prefer is not None else []
        for addr in [a for a in self.slots if a is not None] + self.seeds:
            if addr not in candidates:
                candidates.append(addr)
        candidates.sort(key=lambda a: now - self.suspects.get(a, -1e9) < 1.0)
        for addr in candidates:
            try:
                reply = self._conn(addr).call("CLUSTER", "SLOTS")
            except (OSError, ReplyError) as exc:
                if isinstance(exc, OSError):
                    self.suspects[addr] = time.monotonic()
                self._drop(addr)
                continue
            slots = [None] * 16384
            for entry in reply:
                host, port = entry[2][0].decode(), entry[2][1]
                for slot in range(entry[0], entry[1] + 1):
                    slots[slot] = (host, port)
            self.slots = slots
            return True
        return False

    def set(self, key, value):
        """One SET, following up to five redirections; raises on any failure."""
        return self.call(key, "SET", key, value)

    def call(self, key, *args):
        """One command on `key`, following up to five redirections; raises on any failure."""
        slot = key_slot(key)
        addr = self.slots[slot] or self.seeds[0]
        asking = False
        for _ in range(5):
            try:
                conn = self._conn(addr)
                if asking:
                    conn.call("ASKING")
                return conn.call(*args)
            except ReplyError as err:
                words = str(err).split()
                if words[0] in ("MOVED", "ASK") and len(words) == 3:
                    host, _, port = words[2].rpartition(":")
                    target = (host or addr[0], int(port))
                    if words[0] == "MOVED":
                        self.slots[slot] = target
                        if self.refresh_on_moved:
                            self.refresh(prefer=addr)
                    asking = words[0] == "ASK"
                    addr = target
                    continue
                self.refresh(prefer=addr)
                raise
            except OSError:
                self._drop(addr)
                self.refresh(avoid=addr)
                raise
        raise ReplyError("REDIRECTS too many redirections")


class Writer(threading.Thread):
    """SETs its keys in turn until stopped. Keeps counts, the failures after the signal, the gaps
    between successes longer than 50 ms, and (once `t0` is set) when writes resumed."""

    def __init__(self, name, seeds, keys, password=None):
        super().__init__(name=name, daemon=True)
        self.seeds, self.keys, self.password = seeds, keys, password
        self.halt = threading.Event()
        self.t0 = None
        self.ok = 0
        self.failed = 0
        self.failures = []  # (start, end, kind) of failures that ended at or after t0
        self.samples = {}  # kind -> the first message of that kind after t0
        self.gaps = []  # (last success end, next success end) when more than 50 ms apart
        self.last_ok = None
        self.failed_since_t0 = False
        self.resumed = None  # end of the first success sent after t0 and after a failure ending after t0
        self.error = None

    def run(self):
        try:
            client = ClusterClient(self.seeds, self.password)
        except Exception as exc:  # noqa: BLE001 - reported by the main thread
            self.error = f"no slot map from {self.seeds}: {exc!r}"
            return
        n = 0
        while not self.halt.is_set():
            key = self.keys[n % len(self.keys)]
            n += 1
            start = time.monotonic()
            try:
                client.set(key, str(n))
                ok, kind = True, None
            except (OSError, ReplyError) as exc:
                ok, kind = False, failure_kind(exc)
                if self.t0 is not None and kind not in self.samples:
                    self.samples[kind] = str(exc) or kind
            end = time.monotonic()
            t0 = self.t0
            if ok:
                self.ok += 1
                if self.last_ok is not None and end - self.last_ok > 0.05:
                    self.gaps.append((self.last_ok, end))
                self.last_ok = end
                if t0 is not None and self.failed_since_t0 and self.resumed is None and start >= t0:
                    self.resumed = end
            else:
                self.failed += 1
                if t0 is not None and end >= t0:  # failed after the signal, maybe sent before
                    self.failures.append((start, end, kind))
                    self.failed_since_t0 = True
                time.sleep(FAILURE_PAUSE)


# --- the cluster's health ---------------------------------------------------------------------------

def parse_nodes(text):
    """CLUSTER NODES -> {id: {addr, flags, master, slots: [(lo, hi)], link}}."""
    nodes = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 8:
            continue
        host, _, port = parts[1].split("@")[0].rpartition(":")
        slots = []
        for token in parts[8:]:
            if token.startswith("["):
                continue
            lo, _, hi = token.partition("-")
            slots.append((int(lo), int(hi or lo)))
        nodes[parts[0]] = {
            "addr": (host, int(port)),
            "flags": set(parts[2].split(",")),
            "master": parts[3],
            "slots": slots,
            "link": parts[7],
        }
    return nodes


def info_fields(text):
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line and not line.startswith("#"))


def healthy(ports, password):
    """None when the cluster is ready to be measured, else why not. Returns the topology too."""
    views = {}
    for port in ports:
        conn = Conn(("127.0.0.1", port), timeout=2.0, password=password)
        try:
            state = info_fields(conn.call("CLUSTER", "INFO").decode()).get("cluster_state")
            if state != "ok":
                return f"127.0.0.1:{port} cluster_state:{state}", None
            views[port] = parse_nodes(conn.call("CLUSTER", "NODES").decode())
        finally:
            conn.close()
    for port, nodes in views.items():
        masters = [i for i, n in nodes.items() if "master" in n["flags"]]
        replicas = [i for i, n in nodes.items() if "slave" in n["flags"]]
        bad = [i for i, n in nodes.items() if n["flags"] & {"fail", "fail?", "handshake", "noaddr"} or n["link"] != "connected"]
        if len(nodes) != len(ports) or len(masters) != 3 or len(replicas) != 3 or bad:
            return f"127.0.0.1:{port} sees {len(masters)} masters, {len(replicas)} replicas, trouble at {bad}", None
        for master in masters:
            if sum(1 for r in replicas if nodes[r]["master"] == master) != 1:
                return f"127.0.0.1:{port}: master {master[:8]} has no single replica", None
        if sum(hi - lo + 1 for m in masters for lo, hi in nodes[m]["slots"]) != 16384:
            return f"127.0.0.1:{port}: not every slot assigned", None
    nodes = next(iter(views.values()))
    for master in (n for n in nodes.values() if "master" in n["flags"]):
        conn = Conn(master["addr"], timeout=3.0, password=password)
        try:
            repl = info_fields(conn.call("INFO", "replication").decode())
            if repl.get("connected_slaves") != "1" or "state=online" not in repl.get("slave0", ""):
                return f"{master['addr']}: replica not online ({repl.get('slave0')})", None
            # A write the replica has acknowledged: the replica follows the stream, not a snapshot.
            probe = next(f"bench:probe:{i}".encode() for i in range(100000)
                         if any(lo <= key_slot(f"bench:probe:{i}".encode()) <= hi for lo, hi in master["slots"]))
            conn.call("SET", probe, "1")
            if conn.call("WAIT", "1", "2000") != 1:
                return f"{master['addr']}: WAIT 1 did not answer 1", None
        finally:
            conn.close()
    return None, nodes


def wait_healthy(ports, password, timeout=60.0):
    deadline = time.monotonic() + timeout
    why = "not checked"
    while time.monotonic() < deadline:
        try:
            why, nodes = healthy(ports, password)
        except (OSError, ReplyError) as exc:
            why, nodes = repr(exc), None
        if why is None:
            return nodes
        time.sleep(0.2)
    raise SystemExit(f"failover.py: the cluster did not become healthy in {timeout:.0f} s: {why}")


# --- measure ---------------------------------------------------------------------------------------

def measure(args):
    global SOCKET_TIMEOUT
    SOCKET_TIMEOUT = args.socket_timeout / 1000
    ports = [int(p) for p in args.nodes.split()]
    pids = dict((int(p), int(q)) for p, q in (item.split("=") for item in args.pids.split(",")))
    nodes = wait_healthy(ports, args.password)
    masters = sorted((n for n in nodes.values() if "master" in n["flags"]), key=lambda n: min(n["slots"]))
    victim = masters[0]
    victim_id = next(i for i, n in nodes.items() if n is victim)
    replica = next(n for n in nodes.values() if n["master"] == victim_id)
    victim_pid = pids[victim["addr"][1]]

    def lost(key):
        return any(lo <= key_slot(key) <= hi for lo, hi in victim["slots"])

    lost_keys, other_keys = [], []
    i = 0
    while len(lost_keys) < KEYS_PER_WRITER or len(other_keys) < KEYS_PER_WRITER:
        key = f"bench:{i}".encode()
        i += 1
        (lost_keys if lost(key) else other_keys).append(key)
    lost_keys, other_keys = lost_keys[:KEYS_PER_WRITER], other_keys[:KEYS_PER_WRITER]

    if args.writers:
        seeds, password = [("127.0.0.1", int(args.writers))], None
    else:
        seeds, password = [("127.0.0.1", p) for p in ports], args.password
    lost_w = Writer("lost", seeds, lost_keys, password)
    other_w = Writer("other", seeds, other_keys, password)
    lost_w.start()
    other_w.start()

    # Both writers write without an error for WARMUP seconds (bounded).
    deadline = time.monotonic() + 20
    clean_since, seen = time.monotonic(), (0, 0)
    while True:
        time.sleep(0.05)
        for w in (lost_w, other_w):
            if w.error:
                raise SystemExit(f"failover.py: {w.error}")
        now = time.monotonic()
        failed = (lost_w.failed, other_w.failed)
        if failed != seen or not (lost_w.ok and other_w.ok):
            clean_since, seen = now, failed
        elif now - clean_since >= WARMUP:
            break
        if now > deadline:
            raise SystemExit("failover.py: the writers did not write cleanly before the fault")
    rate_before = {w.name: w.ok for w in (lost_w, other_w)}
    time.sleep(0.5)
    rate_before = {w.name: (w.ok - rate_before[w.name]) / 0.5 for w in (lost_w, other_w)}

    sig = signal.SIGKILL if args.fault == "kill" else signal.SIGSTOP
    limit = args.max_wait or max(30.0, 8 * args.node_timeout / 1000)
    t0 = time.monotonic()
    lost_w.t0 = other_w.t0 = t0
    os.kill(victim_pid, sig)
    try:
        deadline = t0 + limit
        while lost_w.resumed is None and time.monotonic() < deadline:
            time.sleep(0.01)
        window_end = (lost_w.resumed + TAIL) if lost_w.resumed is not None else deadline
        while time.monotonic() < window_end:
            time.sleep(0.01)
        for w in (lost_w, other_w):
            w.halt.set()
        for w in (lost_w, other_w):
            w.join(timeout=5)
    finally:
        if args.fault == "stop":
            os.kill(victim_pid, signal.SIGCONT)

    def kinds(failures):
        counts = {}
        for _, _, kind in failures:
            counts[kind] = counts.get(kind, 0) + 1
        return counts

    other_failures = [f for f in other_w.failures if f[0] <= window_end]
    # The longest stretch in [t0, window_end] without a success of the other-slots writer.
    gap, gap_at = 0.0, None
    stretches = list(other_w.gaps)
    if other_w.last_ok is not None and other_w.last_ok < window_end:
        stretches.append((other_w.last_ok, window_end))
    for before, after in stretches:
        lo, hi = max(before, t0), min(after, window_end)
        if hi - lo > gap:
            gap, gap_at = hi - lo, lo - t0
    lost_failures = [f for f in lost_w.failures if lost_w.resumed is None or f[0] <= lost_w.resumed]
    result = {
        "label": args.label,
        "system": args.system,
        "fault": args.fault,
        "node_timeout_ms": args.node_timeout,
        "socket_timeout_ms": args.socket_timeout,
        "victim": f"127.0.0.1:{victim['addr'][1]}",
        "victim_pid": victim_pid,
        "replica": f"127.0.0.1:{replica['addr'][1]}",
        "resumed_s": None if lost_w.resumed is None else round(lost_w.resumed - t0, 4),
        "gave_up_after_s": None if lost_w.resumed is not None else limit,
        "first_failure_s": round(lost_failures[0][0] - t0, 4) if lost_failures else None,
        "lost_errors": len(lost_failures),
        "lost_error_kinds": kinds(lost_failures),
        "lost_failures_at": [[round(f[0] - t0, 4), round(f[1] - f[0], 4), f[2]] for f in lost_failures[:20]],
        "other_errors": len(other_failures),
        "other_error_kinds": kinds(other_failures),
        "other_gap_s": round(gap, 4),
        "other_gap_at_s": None if gap_at is None else round(gap_at, 4),
        # When (s after the signal) the other-slots writer's failures started, and what they were.
        "other_failures_at": [[round(f[0] - t0, 4), round(f[1] - f[0], 4), f[2]] for f in other_failures[:20]],
        "error_samples": {**lost_w.samples, **other_w.samples},
        "window_s": round(window_end - t0, 4),
        "sets_per_s_before": {k: round(v) for k, v in rate_before.items()},
    }
    with open(args.results, "a", encoding="utf-8") as out:
        out.write(json.dumps(result) + "\n")
    print(json.dumps(result))
    if lost_w.resumed is None:
        print(f"lost slots not writable {limit:g} s after the signal: gave up")
    else:
        print(f"lost slots writable after {result['resumed_s']:.2f} s, other-slot errors "
              f"{result['other_errors']}, longest other-slot gap {result['other_gap_s']:.2f} s")
    return 0 if lost_w.resumed is not None else 3


# --- summary ---------------------------------------------------------------------------------------

def spread(values, fmt):
    if not values:
        return "-"
    med = statistics.median(values)
    if len(values) == 1:
        return fmt(med)
    return f"{fmt(med)} ({fmt(min(values))}-{fmt(max(values))})"


def summary(args):
    runs = []
    with open(args.results, encoding="utf-8") as inp:
        for line in inp:
            if line.strip():
                runs.append(json.loads(line))
    order = {"tessera": 0, "redis-cluster": 1}
    keys = sorted({(r["node_timeout_ms"], r["fault"], r["system"]) for r in runs},
                  key=lambda k: (k[0], k[1], order.get(k[2], 9), k[2]))
    faults = {"kill": "SIGKILL", "stop": "SIGSTOP"}
    lines = [
        "| system | fault | node-timeout | runs | lost slots writable again after (s) | other-slot errors | other slots' longest gap (s) |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for nt, fault, system in keys:
        group = [r for r in runs if (r["node_timeout_ms"], r["fault"], r["system"]) == (nt, fault, system)]
        resumed = [r["resumed_s"] for r in group if r["resumed_s"] is not None]
        missing = len(group) - len(resumed)
        cell = spread(resumed, lambda v: f"{v:.2f}")
        if missing:
            cell += f", {missing} never (gave up)"
        lines.append(
            f"| {system} | {faults.get(fault, fault)} | {nt / 1000:g} s | {len(group)} | {cell} | "
            f"{spread([r['other_errors'] for r in group], lambda v: f'{v:g}')} | "
            f"{spread([r['other_gap_s'] for r in group], lambda v: f'{v:.2f}')} |"
        )
    lines.append("")
    lines.append("Medians (min-max) over the runs. Error kinds seen (all runs):")
    lines.append("")
    for nt, fault, system in keys:
        group = [r for r in runs if (r["node_timeout_ms"], r["fault"], r["system"]) == (nt, fault, system)]
        lost, other, samples = {}, {}, {}
        for r in group:
            for k, v in r.get("error_samples", {}).items():
                samples.setdefault(k, v)
            for k, v in r["lost_error_kinds"].items():
                lost[k] = lost.get(k, 0) + v
            for k, v in r["other_error_kinds"].items():
                other[k] = other.get(k, 0) + v
        def fmt(counts):
            return ", ".join(
                f"{k} {v}" + (f" (`{samples[k]}`)" if samples.get(k, k) != k else "")
                for k, v in sorted(counts.items(), key=lambda kv: -kv[1])) or "none"

        lines.append(f"- {system}, {faults.get(fault, fault)}, {nt / 1000:g} s: lost slots {fmt(lost)}; other slots {fmt(other)}")
    text = "\n".join(lines) + "\n"
    with open(args.out, "w", encoding="utf-8") as out:
        out.write(text)
    print(text, end="")
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    m = sub.add_parser("measure", help="one failover, one JSON line")
    m.add_argument("--system", required=True)
    m.add_argument("--nodes", required=True, help="space-separated node ports (all on 127.0.0.1)")
    m.add_argument("--writers", help="the port the writers use as their only seed (the proxy)")
    m.add_argument("--password", help="AUTH for the nodes (Tessera's node secret)")
    m.add_argument("--pids", required=True, help="PORT=PID,... of the nodes")
    m.add_argument("--fault", choices=["kill", "stop"], required=True)
    m.add_argument("--node-timeout", type=int, required=True, help="ms, for the record and the wait")
    m.add_argument("--max-wait", type=float, help="give up on the lost slots after this many s")
    m.add_argument("--socket-timeout", type=int, default=200, help="the writers' socket timeout, ms (200)")
    m.add_argument("--results", required=True)
    m.add_argument("--label", default="")
    s = sub.add_parser("summary", help="the markdown table of the runs")
    s.add_argument("--results", required=True)
    s.add_argument("--out", required=True)
    args = parser.parse_args()
    return measure(args) if args.command == "measure" else summary(args)


if __name__ == "__main__":
    sys.exit(main())
