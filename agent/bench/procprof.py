#!/usr/bin/env python3
"""Where a process's memory and CPU go, from /proc: for the agent's benchmarks.

  procprof.py PID snapshot > FILE      per-thread CPU ticks (utime + stime) now, as JSON
  procprof.py PID report [FILE]        resident memory by kind of mapping (from smaps) and,
                                       given a snapshot, each thread's CPU since it
"""
import json
import os
import re
import sys

pid = int(sys.argv[1])
what = sys.argv[2]


def threads():
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                stat = f.read()
        except FileNotFoundError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        out[tid] = {"name": name, "ticks": int(fields[11]) + int(fields[12])}
    return out


if what == "snapshot":
    json.dump({"threads": threads()}, sys.stdout)
    sys.exit(0)

# Memory: each mapping's Rss, grouped.
groups = {}
mapping = None
with open(f"/proc/{pid}/smaps") as f:
    for line in f:
        m = re.match(r"^([0-9a-f]+)-([0-9a-f]+) (\S+) \S+ \S+ \S+\s*(.*)$", line)
        if m:
            start, end = int(m.group(1), 16), int(m.group(2), 16)
            size = end - start
            name = m.group(4).strip()
            perms = m.group(3)
            if name.startswith("/"):
                kind = f"file {os.path.basename(name)} {perms}"
            elif name:
                kind = name
            elif perms == "---p":
                kind = "guard/reserved (no access)"
            else:
                kind = f"anon {perms} {size // 1024} KiB"
            mapping = kind
            groups.setdefault(kind, [0, 0])
            groups[kind][1] += 1
        elif line.startswith("Rss:") and mapping:
            groups[mapping][0] += int(line.split()[1])
total = sum(v[0] for v in groups.values())
print(f"resident {total} kB by mapping (kB, mappings):")
for kind, (rss, count) in sorted(groups.items(), key=lambda kv: -kv[1][0]):
    if rss:
        print(f"  {rss:6d}  {count:3d}  {kind}")
with open(f"/proc/{pid}/status") as f:
    for line in f:
        if line.split(":")[0] in ("VmRSS", "RssAnon", "RssFile", "VmHWM", "Threads"):
            print("  " + line.strip().replace("\t", " "))
now = threads()
if len(sys.argv) > 3:
    with open(sys.argv[3]) as f:
        before = json.load(f)["threads"]
    tick = os.sysconf("SC_CLK_TCK")
    print("threads (name: CPU ticks in the window, 1 tick = 10 ms):")
    for tid, t in sorted(now.items(), key=lambda kv: -(kv[1]["ticks"] - before.get(kv[0], {"ticks": 0})["ticks"])):
        d = t["ticks"] - before.get(tid, {"ticks": 0})["ticks"]
        print(f"  {tid:>8} {t['name']:<20} {d}")
else:
    print("threads: " + ", ".join(sorted(t["name"] for t in now.values())))
