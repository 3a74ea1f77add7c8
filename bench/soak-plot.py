#!/usr/bin/env python3
"""The collector's RSS over a soak (bench/soak.sh), one line per CSV, as an SVG.

Usage: bench/soak-plot.py OUT.svg LABEL=soak.csv [LABEL=soak.csv ...]
Only the standard library: no plotting package needed.
"""
import csv
import sys

W, H, L, B = 720, 360, 60, 40  # size, left and bottom margins
COLOURS = ["#c0392b", "#2471a3", "#27ae60", "#8e44ad"]


def main() -> None:
    out, specs = sys.argv[1], sys.argv[2:]
    series = []
    for spec in specs:
        label, path = spec.split("=", 1)
        rows = list(csv.DictReader(open(path)))
        series.append((label, [(float(r["elapsed_s"]) / 60, float(r["rss_kb"]) / 1024) for r in rows]))
    xmax = max(x for _, pts in series for x, _ in pts)
    ymax = max(y for _, pts in series for _, y in pts) * 1.1
    sx = lambda x: L + (W - L - 20) * x / xmax
    sy = lambda y: H - B - (H - B - 20) * y / ymax
    svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
           f'<rect width="{W}" height="{H}" fill="white"/>',
           f'<line x1="{L}" y1="{sy(0)}" x2="{W - 20}" y2="{sy(0)}" stroke="black"/>',
           f'<line x1="{L}" y1="{sy(0)}" x2="{L}" y2="20" stroke="black"/>',
           f'<text x="{W / 2}" y="{H - 8}" text-anchor="middle">minutes</text>',
           f'<text x="14" y="{H / 2}" transform="rotate(-90 14 {H / 2})" text-anchor="middle">collector RSS, MiB</text>']
    step = max(1, round(xmax / 6))
    for m in range(0, int(xmax) + 1, step):
        svg.append(f'<text x="{sx(m)}" y="{sy(0) + 16}" text-anchor="middle">{m}</text>')
    ystep = max(10, round(ymax / 5, -1))
    y = 0
    while y <= ymax:
        svg.append(f'<text x="{L - 6}" y="{sy(y) + 4}" text-anchor="end">{y:.0f}</text>')
        svg.append(f'<line x1="{L}" y1="{sy(y)}" x2="{W - 20}" y2="{sy(y)}" stroke="#ddd"/>')
        y += ystep
    for i, (label, pts) in enumerate(series):
        c = COLOURS[i % len(COLOURS)]
        path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in pts)
        svg.append(f'<polyline fill="none" stroke="{c}" stroke-width="2" points="{path}"/>')
        svg.append(f'<text x="{L + 10}" y="{30 + 16 * i}" fill="{c}">{label}</text>')
    svg.append("</svg>")
    open(out, "w").write("\n".join(svg) + "\n")


if __name__ == "__main__":
    main()
