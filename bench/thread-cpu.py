#!/usr/bin/env python3
"""Per-thread CPU of the processes of one benchmark run, from /proc/<pid>/task/*/stat.

Usage: thread-cpu.py --match TEXT [--match TEXT ...] --out FILE [--per N] [--interval S]

Polls /proc until SIGTERM or SIGINT, following every process whose command line contains one
of the TEXTs (a run's directory, its broker port) and each of their threads; a thread's CPU
is its last seen utime + stime less what it had at the first poll (a thread that ends between
two polls loses at most one interval). Prints "ready" after the first poll. On exit writes FILE: one line per process and thread name (threads of one name
summed, e.g. a runtime's workers), CPU seconds, and CPU microseconds per unit of work when
--per N gives the number of units (batches) the run handled. Plain Python, no packages: it
runs beside the measured processes and takes little of their CPU (it polls every 50 ms).
"""

import argparse
import os
import signal
import sys
import time

TICK = os.sysconf("SC_CLK_TCK")


def cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
        return None


def exe_name(cmd):
    first = cmd.split(" ", 1)[0]
    return os.path.basename(first) or "?"


def task_cpu(pid):
    """{tid: (comm, ticks)} of pid's threads now."""
    out = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                s = f.read()
        except OSError:
            continue
        # comm is in parentheses and may hold spaces; the fields after it are fixed.
        l, r = s.index("("), s.rindex(")")
        comm = s[l + 1 : r]
        rest = s[r + 2 :].split()
        out[tid] = (comm, int(rest[11]) + int(rest[12]))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--match", action="append", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--per", type=int, default=0)
    ap.add_argument("--interval", type=float, default=0.05)
    a = ap.parse_args()

    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    me = str(os.getpid())
    procs = {}  # pid -> process name, for pids that match
    last = {}  # (pid, tid) -> (process, comm, ticks)
    # CPU each thread had already used at the first scan: only what is used after it counts
    # (a collector's start-up, say). Threads first seen later started after it, from zero.
    before = None
    rescan = 0.0
    while not stop:
        now = time.monotonic()
        if now >= rescan:
            for pid in os.listdir("/proc"):
                if not pid.isdigit() or pid in procs or pid == me:
                    continue
                # Non-matching processes are looked at again every time: a shell's child has
                # the shell's command line until it execs the measured program.
                cmd = cmdline(pid)
                if cmd and any(m in cmd for m in a.match):
                    procs[pid] = exe_name(cmd)
            rescan = now + 0.2
        for pid, name in list(procs.items()):
            tasks = task_cpu(pid)
            if not tasks and not os.path.exists(f"/proc/{pid}"):
                del procs[pid]
                continue
            for tid, (comm, ticks) in tasks.items():
                last[(pid, tid)] = (name, comm, ticks)
        if before is None:
            before = {k: v[2] for k, v in last.items()}
            print("ready", flush=True)
        time.sleep(a.interval)

    sums = {}
    for key, (name, comm, ticks) in last.items():
        ticks -= (before or {}).get(key, 0)
        sums[(name, comm)] = sums.get((name, comm), 0) + ticks
    with open(a.out, "w") as f:
        f.write("process\tthread\tcpu_s\tus_per_unit\n")
        for (name, comm), ticks in sorted(sums.items(), key=lambda kv: -kv[1]):
            secs = ticks / TICK
            per = f"{secs * 1e6 / a.per:.2f}" if a.per else ""
            f.write(f"{name}\t{comm}\t{secs:.2f}\t{per}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
