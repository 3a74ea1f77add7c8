#!/usr/bin/env bash
# The agent's benchmarks for BENCHMARKS.md, "Agent (issue 3)". Needs mosquitto,
# mosquitto_sub and curl; builds the release agent and the confirming subscriber
# (agent/bench/confirmer.rs, which acks every batch at once in place of the collector).
#
#   agent/bench/run.sh [all|size|steady|startup|drain]
#   DURATION=60 (steady-state seconds); drain: DRAIN_SAMPLES=166 pool samples (× 6 readings)
#   per batch, DRAIN_BATCHES=1005 batches (≈ 1,000,000 readings)
set -euo pipefail
cd "$(dirname "$0")/../.."
what=${1:-all}
DURATION=${DURATION:-60}
DRAIN_SAMPLES=${DRAIN_SAMPLES:-166}
DRAIN_BATCHES=${DRAIN_BATCHES:-1005}
per_batch=$((DRAIN_SAMPLES * 6))

cargo build -q --release -p spotcheck-agent --example bench-confirmer
AGENT=$PWD/target/release/spotcheck-agent
CONFIRMER=$PWD/target/release/examples/bench-confirmer
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
now_ms() { date +%s%3N; }
port=$(free_port)
metrics_port=$(free_port)

start_broker() {
  printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\nmax_inflight_messages 1000\nmax_queued_messages 100000\n' "$port" >"$work/mosquitto.conf"
  mosquitto -c "$work/mosquitto.conf" >"$work/mosquitto.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do (echo >/dev/tcp/127.0.0.1/"$port") 2>/dev/null && break; sleep 0.05; done
  "$CONFIRMER" "$port" >"$work/confirmer.log" 2>&1 &
  pids+=($!)
  until grep -q subscribed "$work/confirmer.log" 2>/dev/null; do sleep 0.05; done
}

# config NAME SOURCES [SPOOL_TOML]
config() {
  cat >"$work/$1.toml" <<TOML
[agent]
id = "bench-agent"
entity = "pool-1"
domain = "pool"

[mqtt]
broker = "mqtt://127.0.0.1:$port"

[spool]
dir = "$work/spool-$1"
${3:-}

$2

[telemetry]
listen = "127.0.0.1:$metrics_port"
TOML
  echo "$work/$1.toml"
}

metric() { curl -s "http://127.0.0.1:$metrics_port/metrics" | awk -v n="spotcheck_agent_$1" '$1 == n { print $2 }'; }

if [[ $what == all || $what == size ]]; then
  echo "binary: $(stat -c %s "$AGENT") bytes (release, stripped: profile.release strip = \"symbols\")"
fi

if [[ $what == all || $what == steady ]]; then
  start_broker
  # Three pool sources, each 10 samples × 6 metrics every 180 ms: 1,000 readings/s in all.
  src=""
  for i in 1 2 3; do
    src+=$'[[sources]]\ntype = "simulate"\nfeed = "pool"\ninterval_ms = 180\nrecords_per_batch = 10\n'"seed = $i"$'\n\n'
  done
  cfg=$(config steady "$src")
  RUST_LOG=warn "$AGENT" run --config "$cfg" >"$work/steady.log" 2>&1 &
  agent=$!
  pids+=($agent)
  sleep 5 # warm-up: connect, first batches
  tick=$(getconf CLK_TCK)
  read -r u0 s0 < <(awk '{ print $14, $15 }' "/proc/$agent/stat")
  seq0=$(metric spool_next_seq)
  max_rss=0
  for _ in $(seq "$DURATION"); do
    rss=$(awk '/VmRSS/ { print $2 }' "/proc/$agent/status")
    ((rss > max_rss)) && max_rss=$rss
    sleep 1
  done
  read -r u1 s1 < <(awk '{ print $14, $15 }' "/proc/$agent/stat")
  seq1=$(metric spool_next_seq)
  hwm=$(awk '/VmHWM/ { print $2 }' "/proc/$agent/status")
  cpu=$(python3 -c "print(f'{100 * (($u1 + $s1) - ($u0 + $s0)) / $tick / $DURATION:.2f}')")
  readings=$(((seq1 - seq0) * 60))
  echo "steady: ${DURATION}s, $readings readings ($((readings / DURATION))/s), RSS max ${max_rss} kB (VmHWM ${hwm} kB), CPU ${cpu}% of one core, pending at end $(metric spool_pending)"
  kill -TERM "$agent"; wait "$agent" || true
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; pids=()
fi

if [[ $what == all || $what == startup ]]; then
  start_broker
  cfg=$(config startup $'[[sources]]\ntype = "simulate"\nfeed = "pool"\ninterval_ms = 1000\n')
  mosquitto_sub -p "$port" -t 'spotcheck/v1/pool/+/+/readings' -C 1 >/dev/null &
  sub=$!
  sleep 0.5 # let mosquitto_sub subscribe
  t0=$(now_ms)
  RUST_LOG=warn "$AGENT" run --config "$cfg" >"$work/startup.log" 2>&1 &
  agent=$!
  pids+=($agent)
  wait "$sub"
  t1=$(now_ms)
  echo "startup: first batch at the broker $((t1 - t0)) ms after exec (fsync on, empty spool)"
  kill -TERM "$agent"; wait "$agent" || true
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; pids=()
fi

if [[ $what == all || $what == drain ]]; then
  # Broker down: the agent spools DRAIN_BATCHES batches of DRAIN_SAMPLES × 6 readings.
  cfg=$(config drain $'[[sources]]\ntype = "simulate"\nfeed = "pool"\ninterval_ms = 1\n'"records_per_batch = $DRAIN_SAMPLES"$'\n'"batches = $DRAIN_BATCHES" \
    $'max_bytes = 2147483648\nsegment_bytes = 67108864')
  RUST_LOG=warn "$AGENT" run --config "$cfg" >"$work/drain.log" 2>&1 &
  agent=$!
  pids+=($agent)
  until [[ "$(metric spool_next_seq 2>/dev/null)" == "$((DRAIN_BATCHES + 1))" ]]; do sleep 0.2; done
  echo "drain: spooled $((DRAIN_BATCHES * per_batch)) readings, $(du -sh "$work/spool-drain" | cut -f1) on disk"
  # Hold the agent while the broker starts, so that the confirmer has subscribed before the
  # agent can connect (a batch published to no subscriber is lost and re-sent after the timeout).
  kill -STOP "$agent"
  start_broker
  kill -CONT "$agent"
  until [[ "$(metric connected 2>/dev/null)" == 1 ]]; do sleep 0.01; done
  t0=$(now_ms)
  wait "$agent" # it exits once every batch is confirmed
  t1=$(now_ms)
  ms=$((t1 - t0))
  sleep 1.2
  echo "drain: $((DRAIN_BATCHES * per_batch)) readings (${per_batch} per batch) confirmed in ${ms} ms after the connect: $((DRAIN_BATCHES * per_batch * 1000 / ms)) readings/s (confirmer: $(tail -1 "$work/confirmer.log") batches)"
fi
