#!/usr/bin/env python3
"""Independent reference implementation of spotcheck-draw/1 (docs/draw-algorithm.md).

Standard library only. Usage:
    python3 docs/draw_reference.py RECORD.json [RECORD.json ...]
    python3 docs/draw_reference.py --rng collector/tests/vectors/rng.json
Prints "match" or the fields that differ for each record; exits 1 on any mismatch.
"""
import hashlib
import heapq
import json
import struct
import sys

ALGORITHM = "spotcheck-draw/1"
MASK = 0xFFFFFFFF


def _rotl(x, n):
    return ((x << n) | (x >> (32 - n))) & MASK


def _quarter(s, a, b, c, d):
    s[a] = (s[a] + s[b]) & MASK; s[d] = _rotl(s[d] ^ s[a], 16)
    s[c] = (s[c] + s[d]) & MASK; s[b] = _rotl(s[b] ^ s[c], 12)
    s[a] = (s[a] + s[b]) & MASK; s[d] = _rotl(s[d] ^ s[a], 8)
    s[c] = (s[c] + s[d]) & MASK; s[b] = _rotl(s[b] ^ s[c], 7)


def chacha20_block(key, counter):
    """RFC 8439 block with a zero nonce; 64-bit block counter in words 12-13."""
    init = [0x61707865, 0x3320646E, 0x79622D32, 0x6B206574]
    init += list(struct.unpack("<8I", key))
    init += [counter & MASK, counter >> 32, 0, 0]
    s = init[:]
    for _ in range(10):
        _quarter(s, 0, 4, 8, 12); _quarter(s, 1, 5, 9, 13)
        _quarter(s, 2, 6, 10, 14); _quarter(s, 3, 7, 11, 15)
        _quarter(s, 0, 5, 10, 15); _quarter(s, 1, 6, 11, 12)
        _quarter(s, 2, 7, 8, 13); _quarter(s, 3, 4, 9, 14)
    return struct.pack("<16I", *[(x + y) & MASK for x, y in zip(s, init)])


class DrawRng:
    def __init__(self, seed):
        self.key, self.counter, self.buf = seed, 0, b""

    def next_u64(self):
        if len(self.buf) < 8:
            self.buf += chacha20_block(self.key, self.counter)
            self.counter += 1
        x, self.buf = struct.unpack("<Q", self.buf[:8])[0], self.buf[8:]
        return x

    def below(self, n):
        limit = (2**64 // n) * n
        while True:
            x = self.next_u64()
            if x < limit:
                return x % n


def sha(text):
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def parameters_text(p):
    s = (f"algorithm={ALGORITHM}\ndraw_id={p['draw_id']}\ndepartment={p['department']}\n"
         f"item={p['item']}\ninspectors_per_entity={p['inspectors_per_entity']}\n")
    for st in p["strata"]:
        (kind, value), = st["quota"].items()
        s += f"stratum={st['class']} {kind}={value}\n"
    return s


def stratum_size(quota, n):
    (kind, value), = quota.items()
    if kind == "count":
        k = value
    else:
        if value > 10000:
            raise ValueError("ratio above 100 %")
        k = -(-n * value // 10000)
    if k > n:
        raise ValueError("quota above pool")
    return k


def draw(seed, rec):
    p = rec["parameters"]
    rng = DrawRng(seed)
    cands = rec["candidates"]
    by_class = {}
    for i, c in enumerate(cands):
        by_class.setdefault(c["class"], []).append(i)
    sizes = [stratum_size(st["quota"], len(by_class.get(st["class"], []))) for st in p["strata"]]
    pos = {x["id"]: i for i, x in enumerate(rec["inspectors"])}
    conflicted = {}
    for c in rec["conflicts"]:
        conflicted.setdefault(c["entity"], set()).add(pos[c["inspector"]])
    need = p["inspectors_per_entity"]
    for st, k in zip(p["strata"], sizes):
        for e in by_class.get(st["class"], []) if k else []:
            code = cands[e]["code"]
            if len(rec["inspectors"]) - len(conflicted.get(code, ())) < need:
                raise ValueError(f"too few inspectors for {code}")
    drawn = []
    for st, k in zip(p["strata"], sizes):
        m = by_class.get(st["class"], [])
        n = len(m)
        for i in range(k):
            j = i + rng.below(n - i)
            m[i], m[j] = m[j], m[i]
        drawn += m[:k]
    pos = {x["id"]: i for i, x in enumerate(rec["inspectors"])}
    conflicted = {}
    for c in rec["conflicts"]:
        conflicted.setdefault(c["entity"], set()).add(pos[c["inspector"]])
    need = p["inspectors_per_entity"]
    heap = [(0, rng.next_u64(), i) for i in range(len(rec["inspectors"]))]
    heapq.heapify(heap)
    out = []
    for e in drawn:
        code = cands[e]["code"]
        bad = conflicted.get(code, set())
        chosen, skipped = [], []
        while len(chosen) < need:
            load, key, i = heapq.heappop(heap)
            (skipped if i in bad else chosen).append((load, key, i))
        for load, _, i in chosen:
            heapq.heappush(heap, (load + 1, rng.next_u64(), i))
        for entry in skipped:
            heapq.heappush(heap, entry)
        out.append({"entity": code, "class": cands[e]["class"],
                    "inspectors": [rec["inspectors"][i]["id"] for _, _, i in chosen]})
    return out


def teams_after(draws, replacements):
    teams = [dict(a, inspectors=list(a["inspectors"])) for a in draws]
    for r in replacements:
        for a in teams:
            if a["entity"] == r["entity"] and r["recused"] in a["inspectors"]:
                a["inspectors"][a["inspectors"].index(r["recused"])] = r["replacement"]
    return teams


def replacement(rec, k):
    r = rec["replacements"][k]
    teams = teams_after(rec["draws"], rec["replacements"][:k])
    team = next(a for a in teams if a["entity"] == r["entity"])["inspectors"]
    earlier = [x["recused"] for x in rec["replacements"][:k] if x["entity"] == r["entity"]]
    conflicts = {(c["entity"], c["inspector"]) for c in rec["conflicts"]}
    load = {}
    for a in teams:
        for i in a["inspectors"]:
            load[i] = load.get(i, 0) + 1
    eligible = [(x["id"], load.get(x["id"], 0)) for x in rec["inspectors"]
                if x["id"] not in team and x["id"] != r["recused"] and x["id"] not in earlier
                and (r["entity"], x["id"]) not in conflicts]
    low = min(l for _, l in eligible)
    tied = [i for i, l in eligible if l == low]
    return tied[DrawRng(bytes.fromhex(r["seed"])).below(len(tied))]


def lines(rows):
    return "".join("\t".join(r) + "\n" for r in rows)


def verify(rec):
    diffs = []
    if rec["algorithm"] != ALGORITHM:
        return ["algorithm"]
    seed = bytes.fromhex(rec["seed"])
    if hashlib.sha256(seed).hexdigest() != rec["commitment"]:
        diffs.append("commitment")
    d = rec["digests"]
    computed = {
        "parameters": sha(parameters_text(rec["parameters"])),
        "candidates": sha(lines((c["code"], c["class"]) for c in rec["candidates"])),
        "inspectors": sha(lines((i["id"], i["name"]) for i in rec["inspectors"])),
        "conflicts": sha(lines((c["entity"], c["inspector"]) for c in rec["conflicts"])),
        "replacements": sha(lines((r["entity"], r["recused"]) for r in rec["replacements"])),
    }
    diffs += [f"digests.{k}" for k, v in computed.items() if d[k] != v]
    if draw(seed, rec) != rec["draws"]:
        diffs.append("draws")
    for k, r in enumerate(rec["replacements"]):
        if hashlib.sha256(bytes.fromhex(r["seed"])).hexdigest() != r["commitment"]:
            diffs.append(f"replacements[{k}].commitment")
        if replacement(rec, k) != r["replacement"]:
            diffs.append(f"replacements[{k}].replacement")
    return diffs


def check_rng(path):
    v = json.load(open(path, encoding="utf-8"))
    rng = DrawRng(bytes.fromhex(v["seed"]))
    ok = [str(rng.next_u64()) for _ in v["next_u64"]] == v["next_u64"]
    ok &= all(str(rng.below(int(b["n"]))) == b["value"] for b in v["below"])
    return ok


def main(args):
    bad = False
    if args[:1] == ["--rng"]:
        for path in args[1:]:
            ok = check_rng(path)
            print(f"{path}: {'match' if ok else 'MISMATCH'}")
            bad |= not ok
        return 1 if bad else 0
    for path in args:
        diffs = verify(json.load(open(path, encoding="utf-8")))
        print(f"{path}: {'match' if not diffs else 'MISMATCH in ' + ', '.join(diffs)}")
        bad |= bool(diffs)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
