#!/usr/bin/env bash
# Importing N entities from CSV with `spotcheck-collector registry import` (release build):
# wall time and peak RSS, R runs each, for one or more binaries side by side in the same
# command (the first is the baseline the others are divided by).
#
#   bench/registry/import.sh [BINARY ...]          (default: target/release/spotcheck-collector)
#   N=1000000 R=3 bench/registry/import.sh /tmp/spotcheck-collector-base target/release/spotcheck-collector
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${N:-1000000}
R=${R:-3}
BINS=("$@")
[[ ${#BINS[@]} -eq 0 ]] && BINS=(target/release/spotcheck-collector)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
csv=$work/entities.csv
python3 bench/registry/entities.py "$N" >"$csv"
echo "entities: $N ($(du -h "$csv" | cut -f1) of CSV); $(nproc) cores; $(date -u +%FT%TZ)"
printf '| binary | wall s (runs) | peak RSS MB (runs) | wall ÷ baseline |\n|---|---:|---:|---:|\n'
base=""
for bin in "${BINS[@]}"; do
    walls=() rss=()
    for ((r = 0; r < R; r++)); do
        rm -rf "$work/data"
        /usr/bin/time -f '%e %M' -o "$work/time" "$bin" registry import --kind entities \
            --data "$work/data" "$csv" >/dev/null
        read -r w m <"$work/time"
        walls+=("$w") rss+=("$((m / 1024))")
    done
    med=$(printf '%s\n' "${walls[@]}" | sort -n | sed -n "$(((R + 1) / 2))p")
    medm=$(printf '%s\n' "${rss[@]}" | sort -n | sed -n "$(((R + 1) / 2))p")
    [[ -z $base ]] && base=$med
    ratio=$(python3 -c "print(f'{$med / $base:.2f}')")
    echo "| $bin | $med (${walls[*]}) | $medm (${rss[*]}) | $ratio |"
done
