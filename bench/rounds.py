#!/usr/bin/env python3
"""Runs the benchmark rounds for bench/proxy.sh and summarizes them (Python 3 standard library only).

bench/proxy.sh starts every server and writes a targets file; this script runs alternating rounds of
redis-benchmark against them, samples the servers' CPU time from /proc around every run, and writes
the raw runs (runs.jsonl) and the summary (summary.md, also printed).

Targets file: one target per line, tab-separated:
    name <TAB> port <TAB> cluster(0|1) <TAB> comma-separated server pids <TAB> description
"""

import argparse
import csv
import io
import json
import os
import resource
import statistics
import subprocess
import sys
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")

# The ratios the targets of issue 5 name: (label, numerator, denominator, metric, pipeline, goal).
# goal ">=x": the ratio must be at least x; "<=x": at most x.
TARGETS = [
    ("ops/s, Tessera proxy / twemproxy", "tessera-proxy", "twemproxy", "rps", 16, ">=1.2"),
    ("server CPU per request, Tessera proxy / twemproxy", "tessera-proxy", "twemproxy", "cpu_us", 1, "<=1.0"),
    ("p99 latency, Tessera proxy / twemproxy", "tessera-proxy", "twemproxy", "p99", 1, "<=1.0"),
    ("ops/s, Tessera nodes --cluster / Redis Cluster", "tessera-direct", "redis-cluster", "rps", 1, ">=0.8"),
    ("ops/s, Tessera nodes --cluster / Redis Cluster", "tessera-direct", "redis-cluster", "rps", 16, ">=0.8"),
]
# Further ratios that put the numbers in context (no target).
CONTEXT = [
    ("ops/s, Tessera proxy / twemproxy", "tessera-proxy", "twemproxy", "rps", 1),
    ("server CPU per request, Tessera proxy / twemproxy", "tessera-proxy", "twemproxy", "cpu_us", 16),
    ("p99 latency, Tessera proxy / twemproxy", "tessera-proxy", "twemproxy", "p99", 16),
    ("ops/s, Tessera proxy / one redis-server", "tessera-proxy", "redis-single", "rps", 1),
    ("ops/s, Tessera proxy / one redis-server", "tessera-proxy", "redis-single", "rps", 16),
    ("server CPU per request, Tessera nodes / Redis Cluster", "tessera-direct", "redis-cluster", "cpu_us", 1),
    ("server CPU per request, Tessera nodes / Redis Cluster", "tessera-direct", "redis-cluster", "cpu_us", 16),
]
# With --replicas: what one replica per master costs, Tessera's next to Redis Cluster's (issue 14).
REPLICA_CONTEXT = [
    ("ops/s, Tessera proxy with replicas / without", "tessera-replicas", "tessera-proxy", "rps", 1),
    ("ops/s, Tessera proxy with replicas / without", "tessera-replicas", "tessera-proxy", "rps", 16),
    ("ops/s, Redis Cluster with replicas / without", "redis-cluster-replicas", "redis-cluster", "rps", 1),
    ("ops/s, Redis Cluster with replicas / without", "redis-cluster-replicas", "redis-cluster", "rps", 16),
    ("server CPU per request, Tessera proxy with replicas / without", "tessera-replicas", "tessera-proxy", "cpu_us", 1),
    ("server CPU per request, Redis Cluster with replicas / without", "redis-cluster-replicas", "redis-cluster", "cpu_us", 1),
    ("p99 latency, Tessera proxy with replicas / without", "tessera-replicas", "tessera-proxy", "p99", 1),
    ("ops/s, Tessera proxy with replicas / twemproxy", "tessera-replicas", "twemproxy", "rps", 16),
]


def read_targets(path):
    targets = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line or line.startswith("#"):
                continue
            name, port, cluster, pids, description = line.split("\t")
            targets.append(
                {
                    "name": name,
                    "port": int(port),
                    "cluster": cluster == "1",
                    "pids": [int(p) for p in pids.split(",") if p],
                    "description": description,
                }
            )
    return targets


def cpu_ticks(pid):
    """utime + stime of a process (all its threads, dead ones included), in clock ticks."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        stat = f.read()
    # The command name (field 2) may hold spaces: the fields after it follow the last ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state): utime is field 14, stime field 15.
    return int(fields[11]) + int(fields[12])


def start_syscall_count(pid):
    """`perf stat` counting the system calls of `pid` (every kind: sockets' send/recv are not in
    /proc/<pid>/io). Off by default: the tracepoint costs a little on every call it counts."""
    return subprocess.Popen(
        ["perf", "stat", "-x,", "-e", "raw_syscalls:sys_enter", "-p", str(pid)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )


def stop_syscall_count(proc):
    proc.send_signal(2)  # SIGINT: perf prints its counts and exits
    try:
        _, err = proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return None
    for line in err.splitlines():
        fields = line.split(",")
        if len(fields) > 2 and "raw_syscalls:sys_enter" in line and fields[0].isdigit():
            return int(fields[0])
    return None


def context_switches(pid):
    """Voluntary plus involuntary context switches of every live thread of a process."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/status", encoding="ascii") as f:
                for line in f:
                    if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                        total += int(line.split()[1])
        except OSError:
            pass  # a thread that ended meanwhile
    return total


def cpu_steal():
    """(steal, total) jiffies of all CPUs from /proc/stat: the time a hypervisor ran something
    else while this machine had work, which on a shared host stalls whichever process it hits."""
    with open("/proc/stat", encoding="ascii") as f:
        # cpu user nice system idle iowait irq softirq steal (guest time is inside user).
        fields = [int(x) for x in f.readline().split()[1:9]]
    return fields[7], sum(fields)


def steal_pct(before, after):
    """The per cent of CPU time stolen between two `cpu_steal()` readings."""
    return 100.0 * (after[0] - before[0]) / max(1, after[1] - before[1])


def children_cpu():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_one(target, test, pipeline, requests, args, log):
    cmd = [
        "redis-benchmark",
        "-h", "127.0.0.1",
        "-p", str(target["port"]),
        "-t", test.lower(),
        "-n", str(requests),
        "-c", str(args.clients),
        "-d", "100",
        "-r", "100000",
        "-P", str(pipeline),
        "--threads", "1",
        "--csv",
    ]
    if target["cluster"]:
        cmd.append("--cluster")
    before = {pid: cpu_ticks(pid) for pid in target["pids"]}
    # The front process (the proxy, for proxied targets) is also counted alone.
    front = target["pids"][0]
    front_before = context_switches(front)
    counter = start_syscall_count(front) if args.count_syscalls else None
    if counter:
        time.sleep(0.3)  # perf attaches
    client_before = children_cpu()
    steal_before = cpu_steal()
    started = time.monotonic()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.run_timeout)
    except subprocess.TimeoutExpired:
        log.write(f"TIMEOUT after {args.run_timeout}s: {' '.join(cmd)}\n")
        return {"error": f"timed out after {args.run_timeout}s"}
    elapsed = time.monotonic() - started
    steal_after = cpu_steal()
    client_cpu = children_cpu() - client_before
    after = {}
    for pid in target["pids"]:
        try:
            after[pid] = cpu_ticks(pid)
        except OSError:
            return {"error": f"server pid {pid} is gone"}
    front_after = context_switches(front)
    front_syscalls = stop_syscall_count(counter) if counter else None
    log.write(f"$ {' '.join(cmd)}\n{proc.stdout}{proc.stderr}\n")
    row = None
    # In --cluster mode redis-benchmark prints the masters it found before the CSV.
    lines = proc.stdout.splitlines()
    header = next((i for i, line in enumerate(lines) if line.startswith('"test"')), len(lines))
    for record in csv.DictReader(io.StringIO("\n".join(lines[header:]))):
        if record.get("test") == test:
            row = record
    if proc.returncode != 0 or row is None:
        return {"error": f"redis-benchmark exit {proc.returncode}: {proc.stderr.strip()[-300:]}"}
    server_seconds = sum(after[p] - before[p] for p in target["pids"]) / CLK_TCK
    return {
        "rps": float(row["rps"]),
        "p50": float(row["p50_latency_ms"]),
        "p99": float(row["p99_latency_ms"]),
        "avg": float(row["avg_latency_ms"]),
        "cpu_us": server_seconds * 1e6 / requests,
        "front_cpu_us": (after[front] - before[front]) / CLK_TCK * 1e6 / requests,
        "front_syscalls": front_syscalls / requests if front_syscalls is not None else None,
        "front_cswitch": (front_after - front_before) / requests,
        "server_cpu_s": server_seconds,
        "client_cpu_s": client_cpu,
        "elapsed_s": elapsed,
        "steal_pct": steal_pct(steal_before, steal_after),
    }


def median(values):
    return statistics.median(values) if values else None


def summarize(runs, targets, cells):
    """{(target, test, pipeline): {metric: median}} over the successful runs."""
    table = {}
    for target in targets:
        for test, pipeline in cells:
            ok = [
                r for r in runs
                if r["target"] == target["name"] and r["test"] == test
                and r["pipeline"] == pipeline and "error" not in r
            ]
            failed = sum(
                1 for r in runs
                if r["target"] == target["name"] and r["test"] == test
                and r["pipeline"] == pipeline and "error" in r
            )
            cell = {"runs": len(ok), "failed": failed}
            for metric in ("rps", "p50", "p99", "cpu_us", "front_cpu_us", "front_syscalls",
                           "front_cswitch", "client_cpu_s", "elapsed_s", "steal_pct"):
                cell[metric] = median([r[metric] for r in ok if r.get(metric) is not None])
            table[(target["name"], test, pipeline)] = cell
    return table


def fmt(value, digits=2):
    if value is None:
        return "n/a"
    return f"{value:,.{digits}f}"


def ratio(table, num, den, test, metric, pipeline):
    a = table.get((num, test, pipeline), {}).get(metric)
    b = table.get((den, test, pipeline), {}).get(metric)
    if a is None or b is None or b == 0:
        return None
    return a / b


def rounds_meeting(runs, num, den, test, metric, pipeline, goal):
    """"k/n": in how many of the n rounds with both runs the ratio within that round meets the
    goal. The medians can sit near a goal; this shows how often a single round lands each side."""
    def by_round(target):
        return {
            r["round"]: r[metric] for r in runs
            if r["target"] == target and r["test"] == test and r["pipeline"] == pipeline
            and "error" not in r and r.get(metric) is not None
        }
    a, b = by_round(num), by_round(den)
    paired = [a[k] / b[k] for k in a.keys() & b.keys() if b[k]]
    if not paired:
        return "n/a"
    return f"{sum(meets(v, goal) == 'yes' for v in paired)}/{len(paired)}"


def meets(value, goal):
    if value is None:
        return "n/a"
    bound = float(goal[2:])
    ok = value >= bound if goal.startswith(">=") else value <= bound
    return "yes" if ok else "NO"


def render(runs, table, targets, cells, meta):
    out = []
    out.append(f"Run: {meta['date']} · mode {meta['mode']} · {meta['rounds']} round(s) · "
               f"-n {meta['n_p1']} at -P 1, {meta['n_p16']} at -P 16 · -c {meta['clients']} -d 100 "
               f"-r 100000 --threads 1 · persistence: {meta['persistence']}")
    out.append("")
    out.append("Medians over the rounds. server CPU/req = CPU time (utime+stime from /proc/<pid>/stat) "
               "of the proxy plus its backends per request; front = the first process alone (the proxy "
               "for tessera-proxy and twemproxy, one node or redis-server otherwise): its CPU, its "
               "system calls (perf stat, only with --count-syscalls) and its threads' context switches "
               "(/proc/<pid>/task/*/status) per request; client CPU = "
               "redis-benchmark's own; steal = the share of the machine's CPU time a hypervisor "
               "took during the run (/proc/stat), which stalls whatever it hits and shows in p99.")
    out.append("")
    for test, pipeline in cells:
        out.append(f"{test}, -P {pipeline}:")
        out.append("")
        out.append("| target | ops/s | p50 ms | p99 ms | server CPU/req µs | front CPU/req µs "
                   "| front syscalls/req | front ctx sw/req | client CPU s | steal % | runs |")
        out.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for target in targets:
            cell = table[(target["name"], test, pipeline)]
            run_count = f"{cell['runs']}" + (f" ({cell['failed']} failed)" if cell["failed"] else "")
            out.append(
                f"| {target['name']} | {fmt(cell['rps'], 0)} | {fmt(cell['p50'], 3)} | "
                f"{fmt(cell['p99'], 3)} | {fmt(cell['cpu_us'], 2)} | {fmt(cell['front_cpu_us'], 2)} | "
                f"{fmt(cell['front_syscalls'], 2)} | {fmt(cell['front_cswitch'], 2)} | "
                f"{fmt(cell['client_cpu_s'], 2)} | {fmt(cell['steal_pct'], 1)} | {run_count} |"
            )
        out.append("")
    tests = sorted({t for t, _ in cells}, key=lambda t: ["SET", "GET"].index(t) if t in ("SET", "GET") else 9)
    out.append("Targets of issue 5 (ratio of the medians):")
    out.append("")
    out.append("| ratio | -P | goal | " + " | ".join(tests) + " | met | rounds meeting it ("
               + ", ".join(tests) + ") |")
    out.append("|---|---:|---|" + "---:|" * len(tests) + "---|---|")
    for label, num, den, metric, pipeline, goal in TARGETS:
        values = [ratio(table, num, den, test, metric, pipeline) for test in tests]
        verdicts = {meets(v, goal) for v in values}
        met = "NO" if "NO" in verdicts else ("n/a" if verdicts == {"n/a"} else "yes")
        per_round = ", ".join(rounds_meeting(runs, num, den, test, metric, pipeline, goal) for test in tests)
        out.append(f"| {label} | {pipeline} | {goal} | " + " | ".join(fmt(v, 2) for v in values)
                   + f" | {met} | {per_round} |")
    out.append("")
    out.append("Context (no target):")
    out.append("")
    out.append("| ratio | -P | " + " | ".join(tests) + " |")
    out.append("|---|---:|" + "---:|" * len(tests))
    for label, num, den, metric, pipeline in CONTEXT:
        values = [ratio(table, num, den, test, metric, pipeline) for test in tests]
        out.append(f"| {label} | {pipeline} | " + " | ".join(fmt(v, 2) for v in values) + " |")
    out.append("")
    if any(t["name"] == "tessera-replicas" for t in targets):
        out.append("Replicas (--replicas), ratio of the medians:")
        out.append("")
        out.append("| ratio | -P | " + " | ".join(tests) + " |")
        out.append("|---|---:|" + "---:|" * len(tests))
        for label, num, den, metric, pipeline in REPLICA_CONTEXT:
            values = [ratio(table, num, den, test, metric, pipeline) for test in tests]
            out.append(f"| {label} | {pipeline} | " + " | ".join(fmt(v, 2) for v in values) + " |")
        out.append("")
    return "\n".join(out)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", required=True)
    parser.add_argument("--out", required=True, help="directory for runs.jsonl, bench.log, summary.md")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--n-p1", type=int, default=100000)
    parser.add_argument("--n-p16", type=int, default=1000000)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--run-timeout", type=int, default=120, help="seconds one redis-benchmark may take")
    parser.add_argument("--count-syscalls", action="store_true",
                        help="count the front process's system calls with perf stat (perturbs CPU a little)")
    parser.add_argument("--mode", default="full")
    parser.add_argument("--persistence", default="none")
    args = parser.parse_args()

    targets = read_targets(args.targets)
    cells = [("SET", 1), ("SET", 16), ("GET", 1), ("GET", 16)]
    os.makedirs(args.out, exist_ok=True)
    runs = []
    started = time.monotonic()
    steal_at_start = cpu_steal()
    with open(os.path.join(args.out, "runs.jsonl"), "w", encoding="utf-8") as raw, \
            open(os.path.join(args.out, "bench.log"), "w", encoding="utf-8") as log:
        for round_no in range(args.rounds):
            for test, pipeline in cells:
                # Alternate: every target runs each cell back to back, and the order rotates from
                # round to round, so neither drift on a shared machine nor position favours one.
                shift = round_no % len(targets)
                for target in targets[shift:] + targets[:shift]:
                    requests = args.n_p1 if pipeline == 1 else args.n_p16
                    result = run_one(target, test, pipeline, requests, args, log)
                    result.update(
                        {"round": round_no + 1, "target": target["name"], "test": test,
                         "pipeline": pipeline, "requests": requests}
                    )
                    runs.append(result)
                    raw.write(json.dumps(result) + "\n")
                    raw.flush()
                    status = result.get("error") or (
                        f"{result['rps']:>12,.0f} ops/s  p50 {result['p50']:.3f}  p99 {result['p99']:.3f} ms"
                        f"  cpu {result['cpu_us']:.2f} µs/req  steal {result['steal_pct']:.1f}%"
                    )
                    print(f"round {round_no + 1}/{args.rounds}  {test} -P {pipeline:<2}  "
                          f"{target['name']:<15} {status}", flush=True)
    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "mode": args.mode,
        "rounds": args.rounds,
        "n_p1": args.n_p1,
        "n_p16": args.n_p16,
        "clients": args.clients,
        "persistence": args.persistence,
    }
    summary = render(runs, summarize(runs, targets, cells), targets, cells, meta)
    summary += f"\nTargets measured:\n\n" + "\n".join(
        f"- {t['name']}: {t['description']}" for t in targets
    ) + f"\n\nBenchmark time: {time.monotonic() - started:.0f} s\n"
    summary += (
        f"CPU time taken by the hypervisor (steal) over the whole run: "
        f"{steal_pct(steal_at_start, cpu_steal()):.1f}%"
        f" (above a few per cent, p99 measures the host more than the servers)\n"
    )
    with open(os.path.join(args.out, "summary.md"), "w", encoding="utf-8") as f:
        f.write(summary)
    print()
    print(summary)
    failed = sum(1 for r in runs if "error" in r)
    if failed:
        print(f"{failed} run(s) failed: see {args.out}/runs.jsonl and bench.log", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
