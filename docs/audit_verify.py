#!/usr/bin/env python3
"""Verify a Spotcheck audit log export (JSON Lines), independently of Spotcheck.

    python3 audit_verify.py FILE.jsonl [--head HASH]

Prints "ok: N entries, head HASH" and exits 0, or prints every problem and exits 1.
Standard library only. The format and the checks are specified in docs/audit.md.
"""

import hashlib
import json
import sys

GENESIS = "0" * 64
TAG = b"spotcheck-audit-v1\n"
KINDS = {
    "draw_committed", "draw_revealed", "recusal", "assignment", "task_opened",
    "task_acknowledged", "verdict", "override", "result_recorded", "publication",
    "rule_pack_activated", "user_created", "user_changed", "token_issued", "token_revoked",
    "session_opened", "session_closed", "registry_changed", "plan_saved",
    "agent_credential_issued", "agent_credential_rotated", "agent_credential_revoked",
}
COLUMNS = ["seq", "ts_ms", "kind", "subject", "body", "prev_hash", "hash"]


def entry_hash(seq, ts_ms, kind, subject, body, prev_hash):
    """SHA-256 over the tag line and each field as <byte length>:<UTF-8 text>\\n."""
    pre = bytearray(TAG)
    for field in (str(seq), str(ts_ms), kind, subject, body, prev_hash):
        b = field.encode("utf-8")
        pre += str(len(b)).encode("ascii") + b":" + b + b"\n"
    return hashlib.sha256(bytes(pre)).hexdigest()


def is_hash(s):
    return isinstance(s, str) and len(s) == 64 and all(c in "0123456789abcdef" for c in s)


def read(path):
    entries, problems = [], []
    with open(path, "rb") as f:
        for n, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError:
                problems.append(f"line {n}: unreadable: not valid UTF-8")
                continue
            if not line.strip():
                continue
            try:
                e = json.loads(line)
            except ValueError as err:
                problems.append(f"line {n}: unreadable: {err}")
                continue
            if not isinstance(e, dict) or sorted(e) != sorted(COLUMNS):
                problems.append(f"line {n}: unreadable: not an object with exactly {COLUMNS}")
                continue
            ints = all(type(e[k]) is int for k in ("seq", "ts_ms"))
            strs = all(isinstance(e[k], str) for k in COLUMNS[2:])
            if not (ints and strs):
                problems.append(f"line {n}: unreadable: a column has the wrong type")
                continue
            if e["kind"] not in KINDS:
                problems.append(f"line {n}: unreadable: unknown kind {e['kind']!r}")
                continue
            entries.append(e)
    return entries, problems


def verify(entries, head=None):
    problems = []
    seen, dups = set(), set()
    for e in entries:
        if e["seq"] in seen and e["seq"] not in dups:
            dups.add(e["seq"])
            problems.append(f"seq {e['seq']}: duplicate")
        seen.add(e["seq"])
    first = {}
    for e in entries:
        first.setdefault(e["seq"], e["hash"])
    previous = None
    for e in entries:
        seq = e["seq"]
        if previous is not None and seq <= previous and not (seq == previous and seq in dups):
            problems.append(f"seq {seq}: out of order: it comes after seq {previous}")
        previous = seq
        if seq < 1:
            problems.append(f"seq {seq}: seq: seqs start at 1")
        for field in ("hash", "prev_hash"):
            if not is_hash(e[field]):
                problems.append(f"seq {seq}: {field}: not 64 lowercase hex digits")
        if not e["subject"] or any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in e["subject"]):
            problems.append(f"seq {seq}: subject: empty or holds a control character")
        try:
            if not isinstance(json.loads(e["body"]), dict):
                problems.append(f"seq {seq}: body: not a JSON object")
        except ValueError:
            problems.append(f"seq {seq}: body: not JSON")
        computed = entry_hash(seq, e["ts_ms"], e["kind"], e["subject"], e["body"], e["prev_hash"])
        if computed != e["hash"]:
            problems.append(f"seq {seq}: hash: stored {e['hash']} but the content hashes to {computed}")
        expected = GENESIS if seq == 1 else first.get(seq - 1)
        if expected is not None and e["prev_hash"] != expected:
            problems.append(f"seq {seq}: prev_hash: not the hash of the entry before ({expected})")
    expected = 1
    for s in sorted(s for s in seen if s >= 1):
        if s > expected:
            problems.append(f"seq {expected}..={s - 1}: missing")
        expected = s + 1
    if head is not None:
        head = head.strip().lower()
        if head != GENESIS and not any(e["hash"] == head for e in entries):
            problems.append(f"head: the published head {head} is not the hash of any entry")
    last = max(entries, key=lambda e: e["seq"])["hash"] if entries else GENESIS
    return problems, last


def main(argv):
    args, head = [], None
    i = 0
    while i < len(argv):
        if argv[i] == "--head" and i + 1 < len(argv):
            head = argv[i + 1]
            i += 2
        else:
            args.append(argv[i])
            i += 1
    if len(args) != 1:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    entries, problems = read(args[0])
    more, last = verify(entries, head)
    problems += more
    if problems:
        print(f"FAILED: {len(problems)} problem(s)")
        for p in problems:
            print(f"  {p}")
        return 1
    print(f"ok: {len(entries)} entries, head {last}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
