#!/usr/bin/env python3
"""Independent reference implementation of spotcheck-draw/1 (docs/draw-algorithm.md).

Standard library only. Usage:
    python3 docs/draw_reference.py RECORD.json [RECORD.json ...] [--commitments FILE]
    python3 docs/draw_reference.py --rng collector/tests/vectors/rng.json
A file holds one record or a JSON array of them, in the full form (with "candidates") or the
public form (with "strata"). With --commitments (the JSON of GET
/api/v1/public/draw-commitments) each record must also match its draw's commitment.
Prints "match" or the fields that differ for each record; exits 1 on any mismatch.
"""
import hashlib
import heapq
import hmac
import json
import re
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


def hex32(value, field):
    """32 bytes from exactly 64 lowercase hex digits (uppercase is refused, spec §4)."""
    if not isinstance(value, str) or not re.fullmatch("[0-9a-f]{64}", value):
        raise ValueError(f"{field}: not 64 lowercase hex digits")
    return bytes.fromhex(value)


def keyed(key, text):
    return hmac.new(key, text.encode("utf-8"), hashlib.sha256).hexdigest()


def salt(key, code):
    return hmac.new(key, code.encode("utf-8"), hashlib.sha256).digest()


def entry(salt_bytes, code):
    return hashlib.sha256(salt_bytes + code.encode("utf-8")).hexdigest()


def strata_text(lists):
    return "".join(f"stratum={l['class']} size={l['size']}\n" + "".join(h + "\n" for h in l["hashes"])
                   for l in lists)


def stratum_lists(rec, key):
    return [{"class": st["class"],
             "hashes": [entry(salt(key, c["code"]), c["code"])
                        for c in rec["candidates"] if c["class"] == st["class"]]}
            for st in rec["parameters"]["strata"]]


def forbidden(text):
    """Unicode general category Cc: U+0000-U+001F and U+007F-U+009F (spec §3)."""
    return any(ord(ch) <= 0x1F or 0x7F <= ord(ch) <= 0x9F for ch in text)


def check_canonical(rec, full):
    p = rec["parameters"]
    if p["inspectors_per_entity"] < 2:
        raise ValueError("parameters: inspectors_per_entity below 2")
    classes = [st["class"] for st in p["strata"]]
    if len(set(classes)) != len(classes):
        raise ValueError("parameters: a stratum is listed twice")
    ids = [i["id"] for i in rec["inspectors"]]
    if any(a.encode() >= b.encode() for a, b in zip(ids, ids[1:])):
        raise ValueError("inspectors: not strictly sorted by id")
    if any(forbidden(i["name"]) for i in rec["inspectors"]):
        raise ValueError("inspectors: a name holds a control character")
    if full:
        codes = [c["code"] for c in rec["candidates"]]
        if any(a.encode() >= b.encode() for a, b in zip(codes, codes[1:])):
            raise ValueError("candidates: not strictly sorted by code")
        if any(c["class"] not in classes for c in rec["candidates"]):
            raise ValueError("candidates: a class no stratum lists")
        pairs = [(c["entity"].encode(), c["inspector"].encode()) for c in rec["conflicts"]]
        if any(a >= b for a, b in zip(pairs, pairs[1:])):
            raise ValueError("conflicts: not strictly sorted")


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


def check_replacement_commitments(rec, diffs):
    for k, r in enumerate(rec["replacements"]):
        if hashlib.sha256(hex32(r["seed"], f"replacements[{k}].seed")).hexdigest() != r["commitment"]:
            diffs.append(f"replacements[{k}].commitment")


def verify(rec):
    """The full record (spec §9)."""
    diffs = []
    if rec["algorithm"] != ALGORITHM:
        return ["algorithm"]
    seed = hex32(rec["seed"], "seed")
    key = hex32(rec["salt_key"], "salt_key")
    if hashlib.sha256(seed).hexdigest() != rec["commitment"]:
        diffs.append("commitment")
    check_canonical(rec, True)
    d = rec["digests"]
    lists = stratum_lists(rec, key)
    for l in lists:
        l["size"] = len(l["hashes"])
    computed = {
        "parameters": sha(parameters_text(rec["parameters"])),
        "candidates": sha(lines((c["code"], c["class"]) for c in rec["candidates"])),
        "inspectors": sha(lines((i["id"], i["name"]) for i in rec["inspectors"])),
        "conflicts": keyed(key, lines((c["entity"], c["inspector"]) for c in rec["conflicts"])),
        "strata": sha(strata_text(lists)),
        "replacements": sha(lines((r["entity"], r["recused"]) for r in rec["replacements"])),
    }
    diffs += [f"digests.{k}" for k, v in computed.items() if d[k] != v]
    if draw(seed, rec) != rec["draws"]:
        diffs.append("draws")
    check_replacement_commitments(rec, diffs)
    for k, r in enumerate(rec["replacements"]):
        if replacement(rec, k) != r["replacement"]:
            diffs.append(f"replacements[{k}].replacement")
    return diffs


def verify_public(rec):
    """The public record (spec §10): from what it holds, conflicts unknown."""
    diffs = []
    if rec["algorithm"] != ALGORITHM:
        return ["algorithm"]
    seed = hex32(rec["seed"], "seed")
    if hashlib.sha256(seed).hexdigest() != rec["commitment"]:
        diffs.append("commitment")
    check_canonical(rec, False)
    p, lists, d = rec["parameters"], rec["strata"], rec["digests"]
    if [l["class"] for l in lists] != [st["class"] for st in p["strata"]]:
        return diffs + ["strata"]
    diffs += [f"strata[{i}].size" for i, l in enumerate(lists) if l["size"] != len(l["hashes"])]
    computed = {
        "parameters": sha(parameters_text(p)),
        "inspectors": sha(lines((i["id"], i["name"]) for i in rec["inspectors"])),
        "strata": sha(strata_text(lists)),
        "replacements": sha(lines((r["entity"], r["recused"]) for r in rec["replacements"])),
    }
    diffs += [f"digests.{k}" for k, v in computed.items() if d[k] != v]
    rng = DrawRng(seed)
    drawn = []
    for si, (st, l) in enumerate(zip(p["strata"], lists)):
        n = len(l["hashes"])
        k = stratum_size(st["quota"], n)
        m = list(range(n))
        for i in range(k):
            j = i + rng.below(n - i)
            m[i], m[j] = m[j], m[i]
        drawn += [(si, x) for x in m[:k]]
    if len(drawn) != len(rec["draws"]):
        diffs.append("draws")
    for t, (dr, (si, mi)) in enumerate(zip(rec["draws"], drawn)):
        if dr["class"] != lists[si]["class"]:
            diffs.append(f"draws[{t}].class")
        if entry(hex32(dr["salt"], f"draws[{t}].salt"), dr["entity"]) != lists[si]["hashes"][mi]:
            diffs.append(f"draws[{t}]")
    if len({dr["entity"] for dr in rec["draws"]}) != len(rec["draws"]):
        diffs.append("draws (an entity twice)")
    # Phase 2 with conflicts unknown: an inspector popped but not on the team is passed over.
    pos = {x["id"]: i for i, x in enumerate(rec["inspectors"])}
    need = p["inspectors_per_entity"]
    heap = [(0, rng.next_u64(), i) for i in range(len(rec["inspectors"]))]
    heapq.heapify(heap)
    for t, dr in enumerate(rec["draws"]):
        team = [pos.get(i) for i in dr["inspectors"]]
        if None in team or len(set(team)) != need or len(team) != need:
            diffs.append(f"draws[{t}].inspectors")
            break
        chosen, skipped = [], []
        while len(chosen) < need and heap:
            e = heapq.heappop(heap)
            (chosen if e[2] in team else skipped).append(e)
        if [e[2] for e in chosen] != team:
            diffs.append(f"draws[{t}].inspectors")
            break
        for load, _, i in chosen:
            heapq.heappush(heap, (load + 1, rng.next_u64(), i))
        for e in skipped:
            heapq.heappush(heap, e)
    check_replacement_commitments(rec, diffs)
    ids = set(pos)
    for k, r in enumerate(rec["replacements"]):
        teams = teams_after(rec["draws"], rec["replacements"][:k])
        team = next((a["inspectors"] for a in teams if a["entity"] == r["entity"]), [])
        if r["recused"] not in team:
            diffs.append(f"replacements[{k}].recused")
            continue
        before = [x["recused"] for x in rec["replacements"][:k] if x["entity"] == r["entity"]]
        if r["replacement"] not in ids or r["replacement"] in team or r["replacement"] in before:
            diffs.append(f"replacements[{k}].replacement")
    return diffs


def against(rec, commitments):
    """The record's commitment, parameters and committed digests against the published ones."""
    c = next((c for c in commitments
              if c["parameters"]["draw_id"] == rec["parameters"]["draw_id"]), None)
    if c is None:
        return ["commitment (none published for this draw)"]
    diffs = ["commitment"] if c["commitment"] != rec["commitment"] else []
    if c["parameters"] != rec["parameters"]:
        diffs.append("parameters")
    return diffs + [f"digests.{k}" for k in ("parameters", "inspectors", "conflicts", "strata")
                    if c["digests"][k] != rec["digests"][k]]


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
    commitments = None
    if "--commitments" in args:
        i = args.index("--commitments")
        with open(args[i + 1], encoding="utf-8") as f:
            commitments = json.load(f)
        if isinstance(commitments, dict):
            commitments = [commitments]
        args = args[:i] + args[i + 2:]
    for path in args:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        for rec in data if isinstance(data, list) else [data]:
            try:
                diffs = verify(rec) if "candidates" in rec else verify_public(rec)
                if commitments is not None:
                    diffs = against(rec, commitments) + diffs
            except (ValueError, KeyError, IndexError, StopIteration) as e:
                diffs = [f"record ({type(e).__name__}: {e})"]
            print(f"{path}: {'match' if not diffs else 'MISMATCH in ' + ', '.join(diffs)}")
            bad |= bool(diffs)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
