#!/usr/bin/env bash
# The agent's benchmarks for BENCHMARKS.md, "Agent (issue 3)". Needs mosquitto,
# mosquitto_sub and curl; builds the release agent and the confirming subscriber
# (agent/bench/confirmer.rs, which acks every batch at once in place of the collector).
#
#   agent/bench/run.sh [all|size|steady|startup|drain|mixed]
#   DURATION=60 (steady-state seconds); drain: DRAIN_SAMPLES=166 pool samples (× 6 readings)
#   per batch, DRAIN_BATCHES=1005 batches (≈ 1,000,000 readings)
#   mixed: every kind of source at once (simulate + HTTP intake + file tail, ≈ 1,000
#   readings/s), for several binaries side by side in the same runs, the first one the
#   baseline: AGENTS="target/baseline-agent target/release/spotcheck-agent" REPEATS=3;
#   PROFILE=1 also prints each agent's resident memory by mapping and CPU by thread
#   (agent/bench/procprof.py). Not part of `all`. SKIP_BUILD=1 uses the binaries as they are;
#   AGENT and CONFIRMER override their paths.
set -euo pipefail
cd "$(dirname "$0")/../.."
what=${1:-all}
DURATION=${DURATION:-60}
DRAIN_SAMPLES=${DRAIN_SAMPLES:-166}
DRAIN_BATCHES=${DRAIN_BATCHES:-1005}
per_batch=$((DRAIN_SAMPLES * 6))

[[ -z ${SKIP_BUILD:-} ]] && cargo build -q --release -p spotcheck-agent --bin spotcheck-agent --example bench-confirmer
AGENT=${AGENT:-$PWD/target/release/spotcheck-agent}
CONFIRMER=${CONFIRMER:-$PWD/target/release/examples/bench-confirmer}
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

metric() { curl -s "http://127.0.0.1:${2:-$metrics_port}/metrics" | awk -v n="spotcheck_agent_$1" '$1 == n { print $2 }'; }

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

if [[ $what == mixed ]]; then
  # Each agent: one simulated pool (10 samples × 6 readings every 180 ms: 333/s), an HTTP
  # intake POSTed 33 readings 10 times a second (330/s, with Idempotency-Key) and a CSV file
  # tail appended 33 lines 10 times a second (330/s; polled every 500 ms) by
  # agent/bench/feed.py. The agents run side by side, so they share the machine's noise.
  read -r -a bins <<<"${AGENTS:-target/baseline-agent $AGENT}"
  REPEATS=${REPEATS:-3}
  tick=$(getconf CLK_TCK)
  declare -A rss_runs cpu_runs hwm_runs rate_runs
  for ((r = 1; r <= REPEATS; r++)); do
    start_broker
    agents=() feeders=() ports=()
    for i in "${!bins[@]}"; do
      mport=$(free_port) hport=$(free_port)
      ports+=("$mport")
      mkdir -p "$work/mixed-$r-$i"
      src=$'[[sources]]\ntype = "simulate"\nfeed = "pool"\ninterval_ms = 180\nrecords_per_batch = 10\nseed = 1\n\n'
      src+=$'[[sources]]\ntype = "http"\n'"listen = \"127.0.0.1:$hport\""$'\ntoken = "bench-token-0123456789"\n\n'
      src+=$'[[sources]]\ntype = "file"\nformat = "csv"\n'"path = \"$work/mixed-$r-$i/records.csv\""$'\n'"state_file = \"$work/mixed-$r-$i/tail.json\""$'\n'
      cat >"$work/mixed-$r-$i/agent.toml" <<TOML
[agent]
id = "bench-agent-$i"
entity = "pool-$i"
domain = "pool"

[mqtt]
broker = "mqtt://127.0.0.1:$port"

[spool]
dir = "$work/mixed-$r-$i/spool"

$src
[telemetry]
listen = "127.0.0.1:$mport"
TOML
      RUST_LOG=warn "${bins[$i]}" run --config "$work/mixed-$r-$i/agent.toml" >"$work/mixed-$r-$i/agent.log" 2>&1 &
      agents+=($!)
      pids+=($!)
      for _ in $(seq 100); do (echo >/dev/tcp/127.0.0.1/"$hport") 2>/dev/null && break; sleep 0.05; done
      python3 agent/bench/feed.py "$hport" bench-token-0123456789 "$work/mixed-$r-$i/records.csv" >"$work/mixed-$r-$i/feed.log" 2>&1 &
      feeders+=($!)
      pids+=($!)
    done
    sleep 5 # warm-up: connect, first batches, the tail's first polls
    declare -A u0 seq0 acc0 max_rss
    for i in "${!bins[@]}"; do
      a=${agents[$i]}
      read -r u s < <(awk '{ print $14, $15 }' "/proc/$a/stat")
      u0[$i]=$((u + s))
      seq0[$i]=$(metric spool_next_seq "${ports[$i]}")
      acc0[$i]=$(metric records_accepted_total "${ports[$i]}")
      max_rss[$i]=0
      [[ -n ${PROFILE:-} ]] && python3 agent/bench/procprof.py "$a" snapshot >"$work/mixed-$r-$i/threads.json"
    done
    for _ in $(seq "$DURATION"); do
      for i in "${!bins[@]}"; do
        rss=$(awk '/VmRSS/ { print $2 }' "/proc/${agents[$i]}/status")
        ((rss > max_rss[$i])) && max_rss[$i]=$rss
      done
      sleep 1
    done
    for i in "${!bins[@]}"; do
      a=${agents[$i]}
      read -r u s < <(awk '{ print $14, $15 }' "/proc/$a/stat")
      cpu=$(python3 -c "print(f'{100 * ($u + $s - ${u0[$i]}) / $tick / $DURATION:.2f}')")
      hwm=$(awk '/VmHWM/ { print $2 }' "/proc/$a/status")
      batches=$(($(metric spool_next_seq "${ports[$i]}") - seq0[$i]))
      intake=$(($(metric records_accepted_total "${ports[$i]}") - acc0[$i]))
      # Intake records counted by the agent, plus the simulated pool's 60 readings per batch
      # (its batches: all batches less the intake's, which are one per request or per poll).
      rate=$(python3 -c "print(round(($intake + 60 * ($DURATION * 1000 // 180)) / $DURATION))")
      echo "run $r ${bins[$i]}: RSS max ${max_rss[$i]} kB (VmHWM $hwm kB), CPU $cpu %, ≈ $rate readings/s ($batches batches, $intake intake records), pending $(metric spool_pending "${ports[$i]}")" >&2
      if [[ -n ${PROFILE:-} ]]; then
        python3 agent/bench/procprof.py "$a" report "$work/mixed-$r-$i/threads.json" | sed 's/^/    /' >&2
        # glibc's own account of each malloc arena (printed on the agent's stderr).
        if command -v gdb >/dev/null; then
          gdb -batch -p "$a" -ex 'call (void) malloc_stats()' >/dev/null 2>&1 || true
          sed -n '/^Arena 0:/,$p' "$work/mixed-$r-$i/agent.log" | sed 's/^/    malloc: /' >&2
        fi
      fi
      rss_runs[$i]+="${max_rss[$i]} " cpu_runs[$i]+="$cpu " hwm_runs[$i]+="$hwm " rate_runs[$i]+="$rate "
    done
    for f in "${feeders[@]}"; do kill -TERM "$f" 2>/dev/null || true; done
    for a in "${agents[@]}"; do kill -TERM "$a" 2>/dev/null || true; wait "$a" || true; done
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; pids=()
  done
  med() { printf '%s\n' $1 | sort -n | sed -n "$(((REPEATS + 1) / 2))p"; }
  echo "mixed sources, ${DURATION} s per run, $REPEATS runs side by side; $(nproc) cores; $(date -u +%FT%TZ)"
  printf '| binary | RSS max kB, median (runs) | VmHWM kB (runs) | CPU %% of a core, median (runs) | readings/s | RSS ÷ baseline | CPU ÷ baseline |\n|---|---:|---:|---:|---:|---:|---:|\n'
  for i in "${!bins[@]}"; do
    rm=$(med "${rss_runs[$i]}") cm=$(med "${cpu_runs[$i]}")
    [[ $i == 0 ]] && { rb=$rm; cb=$cm; }
    echo "| ${bins[$i]} | $rm (${rss_runs[$i]% }) | ${hwm_runs[$i]% } | $cm (${cpu_runs[$i]% }) | $(med "${rate_runs[$i]}") | $(python3 -c "print(f'{$rm / $rb:.2f}')") | $(python3 -c "print(f'{$cm / $cb:.2f}' if $cb else '-')") |"
  done
fi
