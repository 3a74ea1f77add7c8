#!/usr/bin/env python3
"""Writes N valid entity rows (CSV, the format of docs/registry-import.md) to stdout, for the
import benchmark: `python3 bench/registry/entities.py 1000000 > /tmp/entities-1m.csv`.
Credit codes are distinct and carry the GB 32100-2015 check character; each entity has one
agent id."""
import sys

ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
WEIGHTS = [1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28]
DOMAINS = ["pool", "game", "hospital"]
RISKS = ["A", "B", "B", "C", "C", "C", "D"]


def code(n: int) -> str:
    body = "91440300"  # legal-person company, Shenzhen
    digits = []
    for _ in range(9):
        digits.append(ALPHABET[n % 31])
        n //= 31
    first17 = body + "".join(reversed(digits))
    s = sum(ALPHABET.index(c) * w for c, w in zip(first17, WEIGHTS))
    return first17 + ALPHABET[(31 - s % 31) % 31]


def main() -> None:
    n = int(sys.argv[1])
    out = sys.stdout
    out.write("code,name,domain,district,risk,address,contact,agents\n")
    for i in range(n):
        out.write(
            f"{code(i)},深圳市示例经营单位{i}有限公司,{DOMAINS[i % 3]},福田区,"
            f"{RISKS[i % len(RISKS)]},深圳市福田区示例路{i}号,0755-{i % 100000000:08d},agent-{i}\n"
        )


if __name__ == "__main__":
    main()
