#!/usr/bin/env bash
# Soak (issue 16): the collector with its embedded broker, one simulated agent per feed (pool,
# game, hospital) and a steady trickle of hostile input (`soak hostile`, bench/src/bin/soak/)
# for a while, with API traffic beside it (`soak api`) and a supervisor's console open in
# headless Chromium (`soak console`); every SAMPLE_S seconds one CSV row: the collector's RSS,
# open files, data-dir size, the agents' spool queues, the batches kept back, the /metrics
# counters and the ingest-to-commit latency histogram, /healthz and two API answers (a
# malformed path parameter must get 400, the dead-letter list 200).
# At the end `soak check` asserts the accounting (every batch the agents made stored exactly
# once and whole, every hostile message counted under its reason, the dead-letter quota held,
# PRAGMA integrity_check) and the bounds over the CSV (memory plateau, open files, kept-back
# batches), the API traffic's errors, the console's liveness, and prints the figures (with the
# p99 ingest-to-commit latency of every minute) as Markdown tables. Not run in CI.
# The defaults are the issue's soak: 30 minutes at about 5,000 readings a second (the pool
# agent: 84 records of six readings every 100 ms) plus 840 event records a second from each of
# the game and hospital agents, 20 API requests a second and one console.
#
# Usage: bench/soak.sh                       (from anywhere)
# Knobs (environment):
#   DURATION_S=1800        how long the agents and the hostile trickle run
#   SAMPLE_S=10            seconds between CSV rows
#   INTERVAL_MS=100        each agent makes one batch per interval
#   RECORDS=84             records per batch (a pool record is six readings)
#   API_RATE=20            API requests a second (`soak api`; 0: none)
#   CONSOLE=1              a supervisor's console open in Chromium (0: none)
#   HOSTILE_PERIOD_MS=2000 one round of hostile messages (11, plus a too_large every 10th
#                          round and an oversized packet every 60th) per period
#   TOO_LARGE_EVERY=10 OVERSIZED_EVERY=60  those two rates, in rounds (0: never)
#   QUOTA=1048576          ingest.dead_letter_quota_bytes (small, so that the quota is reached)
#   BROKER_BUFFER=4194304  mqtt.embedded_buffer_bytes: what the embedded broker keeps per
#                          subscription filter, read or not. Smaller than the default (16 MiB)
#                          so that this bounded buffer is full within minutes at the soak's
#                          rate, and growth after that is growth of something else
#   PROFILE=debug          debug or release: which build of the binaries to run
#   SKIP_BUILD=1           use the binaries already built
#   OUT=DIR                where the CSV, logs and data go (default: a new /tmp/spotcheck-soak.*)
# Exit status: 0 when every check passed.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
DURATION_S=${DURATION_S:-1800}
SAMPLE_S=${SAMPLE_S:-10}
INTERVAL_MS=${INTERVAL_MS:-100}
RECORDS=${RECORDS:-84}
API_RATE=${API_RATE:-20}
CONSOLE=${CONSOLE:-1}
HOSTILE_PERIOD_MS=${HOSTILE_PERIOD_MS:-2000}
TOO_LARGE_EVERY=${TOO_LARGE_EVERY:-10}
OVERSIZED_EVERY=${OVERSIZED_EVERY:-60}
QUOTA=${QUOTA:-1048576}
BROKER_BUFFER=${BROKER_BUFFER:-4194304}
MAX_HELD=${MAX_HELD:-10000}
PROFILE=${PROFILE:-debug}
BIN=$ROOT/target/$PROFILE
OUT=${OUT:-$(mktemp -d /tmp/spotcheck-soak.XXXXXX)}
mkdir -p "$OUT"
log() { echo "[soak $(date -u +%H:%M:%S)] $*" >&2; }
log "output in $OUT"

PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT

if [[ -z ${SKIP_BUILD:-} ]]; then
    flag=()
    [[ $PROFILE == release ]] && flag=(--release)
    log "building ($PROFILE)"
    (cd "$ROOT" && cargo build -q "${flag[@]}" -p spotcheck-collector -p spotcheck-agent \
        -p spotcheck-bench --bin spotcheck-collector --bin spotcheck-agent --bin soak)
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
HTTP=127.0.0.1:$(free_port)
MQTT_PORT=$(free_port)
DATA=$OUT/data
mkdir -p "$OUT/credentials" "$OUT/spool"

# name entity domain
AGENTS=("soak-pool pool-1 pool" "soak-game game-1 game" "soak-hospital hospital-1 hospital")
bindings=""
for a in "${AGENTS[@]}" "soak-evil soak-evil-pool pool"; do
    read -r id entity domain <<<"$a"
    "$BIN/spotcheck-collector" agents add "$id" --data "$DATA" --out "$OUT/credentials/$id.credential" >/dev/null
    bindings+=$'[[agents]]\n'"id = \"$id\""$'\n'"entity = \"$entity\""$'\n'"domain = \"$domain\""$'\n'
done
cat >"$OUT/collector.toml" <<EOF
data_dir = "$DATA"
[http]
listen = "$HTTP"
[mqtt]
embedded_listen = "127.0.0.1:$MQTT_PORT"
embedded_buffer_bytes = $BROKER_BUFFER
[ingest]
hold_for_s = 10
max_held = $MAX_HELD
max_held_per_agent = 1000
dead_letter_quota_bytes = $QUOTA
$bindings
EOF

RUST_LOG=info "$BIN/spotcheck-collector" serve --config "$OUT/collector.toml" >"$OUT/collector.log" 2>&1 &
COLLECTOR=$!
PIDS+=("$COLLECTOR")
for _ in $(seq 1 300); do
    curl -sf -o /dev/null "http://$HTTP/healthz" && break
    kill -0 "$COLLECTOR" || { cat "$OUT/collector.log"; exit 1; }
    sleep 0.1
done
curl -sf -o /dev/null "http://$HTTP/healthz"
TOKEN=$(cat "$DATA/admin.token")
log "collector pid $COLLECTOR on http://$HTTP, broker 127.0.0.1:$MQTT_PORT"

BATCHES=$((DURATION_S * 1000 / INTERVAL_MS))
AGENT_PORTS=()
AGENT_PIDS=()
CHECK_AGENTS=()
for a in "${AGENTS[@]}"; do
    read -r id entity domain <<<"$a"
    port=$(free_port)
    AGENT_PORTS+=("$port")
    CHECK_AGENTS+=(--agent "$id=$OUT/spool/$id")
    cat >"$OUT/$id.toml" <<EOF
[agent]
id = "$id"
entity = "$entity"
domain = "$domain"
credential_file = "$OUT/credentials/$id.credential"
[mqtt]
broker = "mqtt://127.0.0.1:$MQTT_PORT"
ack_timeout_ms = 10000
[spool]
dir = "$OUT/spool/$id"
[telemetry]
listen = "127.0.0.1:$port"
[[sources]]
type = "simulate"
feed = "$domain"
interval_ms = $INTERVAL_MS
records_per_batch = $RECORDS
seed = 16
batches = $BATCHES
EOF
    RUST_LOG=info "$BIN/spotcheck-agent" run --config "$OUT/$id.toml" >"$OUT/$id.log" 2>&1 &
    AGENT_PIDS+=($!)
    PIDS+=($!)
done
log "agents: ${#AGENTS[@]} × $BATCHES batches of $RECORDS records, one per ${INTERVAL_MS} ms"

"$BIN/soak" hostile --broker "127.0.0.1:$MQTT_PORT" --credential "$OUT/credentials/soak-evil.credential" \
    --duration-s "$DURATION_S" --period-ms "$HOSTILE_PERIOD_MS" \
    --too-large-every "$TOO_LARGE_EVERY" --oversized-every "$OVERSIZED_EVERY" --report "$OUT/hostile.json" \
    >"$OUT/hostile.log" 2>&1 &
HOSTILE=$!
PIDS+=("$HOSTILE")

CHECK_EXTRA=()
if [[ $API_RATE != 0 ]]; then
    entities=()
    for a in "${AGENTS[@]}"; do read -r _ entity _ <<<"$a"; entities+=(--entity "$entity"); done
    "$BIN/soak" api --http "$HTTP" --token "$TOKEN" "${entities[@]}" --duration-s "$DURATION_S" \
        --rate "$API_RATE" --report "$OUT/api.json" >"$OUT/api.log" 2>&1 &
    API=$!
    PIDS+=("$API")
    CHECK_EXTRA+=(--api-report "$OUT/api.json")
fi
if [[ $CONSOLE != 0 ]]; then
    "$BIN/soak" console --http "$HTTP" --token "$TOKEN" --profile "$OUT/chromium" \
        --duration-s "$DURATION_S" --report "$OUT/console.json" >"$OUT/console.log" 2>&1 &
    CONSOLE_PID=$!
    PIDS+=("$CONSOLE_PID")
    CHECK_EXTRA+=(--console-report "$OUT/console.json")
fi

CSV=$OUT/soak.csv
echo "utc,elapsed_s,rss_kb,anon_kb,fds,data_bytes,db_bytes,wal_bytes,readings,events,batches,rejected,over_quota,refused,kept_back,out_of_range,duplicates,commits,spool_pending,in_flight,healthz,api_bad,latency_buckets" >"$CSV"
metric() { awk -v n="$1" '$1 == n { s += $2 } END { printf "%d", s }' "$OUT/metrics.txt"; }
rejected() { awk '/^spotcheck_messages_rejected_total\{/ { s += $2 } END { printf "%d", s }' "$OUT/metrics.txt"; }
# The ingest-to-commit histogram as le:count pairs joined by ';' (cumulative, as exposed).
latency_buckets() {
    awk -F'[{}" ]+' '/^spotcheck_ingest_commit_latency_seconds_bucket\{/ { printf "%s%s:%s", sep, $3, $4; sep = ";" }' "$OUT/metrics.txt"
}
agent_sum() {
    local s=0 v
    for p in "${AGENT_PORTS[@]}"; do
        v=$( (curl -s "http://127.0.0.1:$p/metrics" 2>/dev/null || true) | awk -v n="$1" '$1 == n { print $2 }' || true)
        s=$((s + ${v:-0}))
    done
    echo "$s"
}
sample() {
    local rss anon fds du db wal hz bad=0 code
    rss=$(awk '/^VmRSS:/ { print $2 }' "/proc/$COLLECTOR/status")
    anon=$(awk '/^RssAnon:/ { print $2 }' "/proc/$COLLECTOR/status")
    fds=$(ls "/proc/$COLLECTOR/fd" | wc -l)
    du=$(du -sb "$DATA" | cut -f1)
    db=$(stat -c %s "$DATA/spotcheck.db")
    wal=$(stat -c %s "$DATA/spotcheck.db-wal" 2>/dev/null || echo 0)
    curl -s "http://$HTTP/metrics" >"$OUT/metrics.txt"
    hz=$(curl -s -o /dev/null -w '%{http_code}' "http://$HTTP/healthz")
    code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $TOKEN" "http://$HTTP/api/v1/dead-letters?limit=100")
    [[ $code == 200 ]] || bad=$((bad + 1))
    code=$(curl -s -o "$OUT/bad-path.json" -w '%{http_code}' -H "Authorization: Bearer $TOKEN" "http://$HTTP/api/v1/tasks/not-a-number")
    [[ $code == 400 ]] && grep -q '"error"' "$OUT/bad-path.json" || bad=$((bad + 1))
    echo "$(date -u +%FT%TZ),$((SECONDS - T0)),$rss,$anon,$fds,$du,$db,$wal,$(metric spotcheck_readings_ingested_total),$(metric spotcheck_events_ingested_total),$(metric spotcheck_batches_committed_total),$(rejected),$(metric spotcheck_dead_letters_over_quota_total),$(metric spotcheck_broker_refused_oversized_total),$(metric spotcheck_batches_kept_back),$(metric spotcheck_readings_out_of_range_total),$(metric spotcheck_duplicates_dropped_total),$(metric spotcheck_store_commits_total),$(agent_sum spotcheck_agent_spool_pending),$(agent_sum spotcheck_agent_in_flight),$hz,$bad,$(latency_buckets)" >>"$CSV"
}

T0=$SECONDS
log "running for ${DURATION_S} s, a sample every ${SAMPLE_S} s into $CSV"
while kill -0 "$HOSTILE" 2>/dev/null; do
    kill -0 "$COLLECTOR" || { log "the collector died"; tail -50 "$OUT/collector.log"; exit 1; }
    sample
    sleep "$SAMPLE_S"
done
wait "$HOSTILE" || { log "soak hostile failed"; cat "$OUT/hostile.log"; exit 1; }
log "hostile trickle done: $(tail -1 "$OUT/hostile.log")"
if [[ -n ${API:-} ]]; then
    wait "$API" || { log "soak api failed"; cat "$OUT/api.log"; exit 1; }
    log "API traffic done: $(tail -1 "$OUT/api.log")"
fi
if [[ -n ${CONSOLE_PID:-} ]]; then
    wait "$CONSOLE_PID" || { log "soak console failed"; cat "$OUT/console.log"; exit 1; }
    log "console done: $(tail -1 "$OUT/console.log")"
fi
# The agents exit by themselves once their last batch is confirmed.
for pid in "${AGENT_PIDS[@]}"; do
    wait "$pid" || { log "an agent failed (pid $pid)"; exit 1; }
done
sample
log "agents done; checking"
panics=$(cat "$OUT"/*.log | grep -c panicked || true)
status=0
"$BIN/soak" check --data "$DATA" --http "$HTTP" --report "$OUT/hostile.json" --csv "$CSV" \
    --quota "$QUOTA" --max-held "$MAX_HELD" "${CHECK_AGENTS[@]}" "${CHECK_EXTRA[@]}" >"$OUT/check.md" || status=$?
cat "$OUT/check.md"
echo "- panics in the logs: $panics" | tee -a "$OUT/check.md"
echo "- machine: $(nproc) cores, $(awk '/MemTotal/ { printf "%.0f GiB", $2/1048576 }' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT/check.md"
[[ $status == 0 && $panics == 0 ]]
