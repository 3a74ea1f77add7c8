#!/usr/bin/env bash
# Issue 13's two figures with the time-series store on a core of its own, as on a deployment
# where it runs on its own machine: VictoriaMetrics pinned to the last CPU, everything else
# (sink-throughput; bench/ingest.sh's load generator, broker and collector) to CPU 0.
# Needs release builds (cargo build --release -p spotcheck-collector -p spotcheck-bench),
# victoria-metrics on PATH and at least 2 CPUs.
#
#   bench/sink/own-core.sh            PAIRS=3 READINGS=2000000 ROUNDS=5 PORT=18428
set -euo pipefail
cd "$(dirname "$0")/../.."
PAIRS=${PAIRS:-3} READINGS=${READINGS:-2000000} ROUNDS=${ROUNDS:-5} PORT=${PORT:-18428}
store_cpu=$(($(nproc) - 1))
((store_cpu >= 1)) || { echo "needs at least 2 CPUs" >&2; exit 1; }
vmdir=$(mktemp -d /tmp/vm-own-core.XXXXXX)
taskset -c "$store_cpu" victoria-metrics -storageDataPath "$vmdir/data" -httpListenAddr "127.0.0.1:$PORT" \
    -retentionPeriod=100y -dedup.minScrapeInterval=1ms >"$vmdir/log" 2>&1 &
vm=$!
trap 'kill $vm 2>/dev/null; wait $vm 2>/dev/null; rm -rf "$vmdir"' EXIT
for _ in $(seq 1 200); do curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && break; sleep 0.05; done
echo "## sink-throughput: VictoriaMetrics on CPU $store_cpu, the rest on CPU 0 ($(date -u '+%F %H:%M') UTC)"
taskset -c 0 target/release/sink-throughput --url "http://127.0.0.1:$PORT" --readings 1000000 --rounds "$ROUNDS"
echo "## ingest with the sink off, then on (medians of 3 each)"
rate() { taskset -c 0 env "$@" SKIP_BUILD=1 REPEATS=3 BROKERS=embedded SIZES=100 CONSUMERS=spotcheck \
    READINGS_B100="$READINGS" bench/ingest.sh 2>/dev/null | awk -F'|' '/^\| embedded/ {gsub(/[ ,]/, "", $5); print $5}'; }
for ((pair = 1; pair <= PAIRS; pair++)); do
    off=$(rate SINK_URL=) on=$(rate SINK_URL="http://127.0.0.1:$PORT")
    echo "pair $pair: off $off on $on ratio $(python3 -c "print(f'{$on / $off:.2f}')")"
done
