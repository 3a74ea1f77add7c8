#!/usr/bin/env bash
# Importing N entities from CSV with `spotcheck-collector registry import` (release build):
# wall time, CPU time (user + system) and peak RSS, R runs each, for one or more binaries
# side by side in the same command (the first is the baseline the others are divided by).
# The runs alternate between the binaries, so that a busy spell of the machine is shared.
# DRY=1 adds each binary's --dry-run (reading and checking only, no SQLite) as a row.
#
#   bench/registry/import.sh [BINARY ...]          (default: target/release/spotcheck-collector)
#   N=1000000 R=3 bench/registry/import.sh /tmp/spotcheck-collector-base target/release/spotcheck-collector
#   CSV=FILE uses an entity file already generated (N is then only its label)
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${N:-1000000}
R=${R:-3}
BINS=("$@")
[[ ${#BINS[@]} -eq 0 ]] && BINS=(target/release/spotcheck-collector)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
csv=$work/entities.csv
if [[ -n ${CSV:-} ]]; then cp "$CSV" "$csv"; else python3 bench/registry/entities.py "$N" >"$csv"; fi
echo "entities: $N ($(du -h "$csv" | cut -f1) of CSV); $(nproc) cores; $(date -u +%FT%TZ)"
cases=()
for bin in "${BINS[@]}"; do
    cases+=("$bin")
    [[ -n ${DRY:-} ]] && cases+=("$bin --dry-run")
done
declare -A walls cpus rss
for ((r = 0; r < R; r++)); do
    for c in "${cases[@]}"; do
        read -r bin dry <<<"$c"
        rm -rf "$work/data"
        /usr/bin/time -f '%e %M %U %S' -o "$work/time" "$bin" registry import --kind entities \
            --data "$work/data" $dry "$csv" >/dev/null 2>"$work/stderr" || { cat "$work/stderr" >&2; exit 1; }
        read -r w m u s <"$work/time"
        walls[$c]+="$w " cpus[$c]+="$(python3 -c "print(f'{$u + $s:.2f}')") " rss[$c]+="$((m / 1024)) "
    done
done
med() { printf '%s\n' $1 | sort -n | sed -n "$(((R + 1) / 2))p"; }
printf '| binary | wall s, median (runs) | CPU s (runs) | peak RSS MB (runs) | wall ÷ baseline | CPU ÷ baseline |\n|---|---:|---:|---:|---:|---:|\n'
base="" cbase=""
for c in "${cases[@]}"; do
    mw=$(med "${walls[$c]}") mc=$(med "${cpus[$c]}") mm=$(med "${rss[$c]}")
    [[ -z $base ]] && base=$mw cbase=$mc
    echo "| $c | $mw (${walls[$c]% }) | $mc (${cpus[$c]% }) | $mm (${rss[$c]% }) | $(python3 -c "print(f'{$mw / $base:.2f}')") | $(python3 -c "print(f'{$mc / $cbase:.2f}')") |"
done
