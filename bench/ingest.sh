#!/usr/bin/env bash
# Ingest throughput, end to end (publish -> committed), for issue 2.
#
# For each broker (embedded rumqttd, Mosquitto) x batch size (1, 100) x consumer
# (ceiling, inproc, python, spotcheck, spotcheck-noauth), R times: start a fresh broker and consumer, wait until the
# consumer is subscribed, run loadgen, wait until the consumer has every reading.
# Throughput = readings / (loadgen's clock start -> the consumer's last reading).
# Prints the median of each cell as a Markdown table, with the machine it ran on.
#
# Usage: bench/ingest.sh            (from anywhere; takes a few minutes)
# Knobs (environment):
#   REPEATS=3                  runs per cell (median reported)
#   READINGS_B1=200000         readings per run with batches of 1
#   READINGS_B100=2000000      readings per run with batches of 100
#   BROKERS="embedded mosquitto"  SIZES="1 100"  CONSUMERS="ceiling inproc python spotcheck spotcheck-noauth"
#                              (inproc: the embedded broker counting through its in-process
#                              link, as Spotcheck reads it; embedded broker only.
#                              spotcheck: agents' MACs checked (the default); spotcheck-noauth:
#                              ingest.require_agent_auth = false and unsigned batches, to
#                              measure what checking costs. Both log the agents in.)
#   AGENTS=4                   loadgen agents (bench-0 ... bench-{AGENTS-1})
#   CONNECTIONS=0              loadgen MQTT connections (0 = one per agent)
#   COLLECTOR_CONNECTIONS=     the collector's mqtt.connections (empty = its default, 32;
#                              external brokers only: the embedded one is read in-process)
#   COLLECTOR_GROUP=           the collector's mqtt.shared_group (empty = none)
#   SINK_URL=                  the collector's sink.url (empty = no time-series sink), e.g. a
#                              VictoriaMetrics at http://127.0.0.1:8428: ingest with the sink on
#   TIMEOUT=300                seconds a run may take before it counts as failed
#   SKIP_BUILD=1               use the binaries already in target/release
#   BIN=DIR                    take the binaries from DIR instead of target/release (with
#                              SKIP_BUILD=1), e.g. an older build's collector beside today's loadgen
#   THREAD_CPU=1               per-thread CPU of the broker, consumer and loadgen during each run
#                              (bench/thread-cpu.py: $WORK/<run>/threads.tsv, CPU s and µs per
#                              batch by process and thread name)
#   PERF=1                     perf record -g of the consumer from subscribed to done
#                              ($WORK/<run>/perf.data; PERF_ARGS to change perf's options)
#   LOADGEN_MAC=blake3         the MAC loadgen signs with (hmac-sha256 for a baseline build
#                              from before keyed BLAKE3)
#   BASELINE_COLLECTOR=PATH    another spotcheck-collector build, run as the consumer
#                              "spotcheck-baseline" (MACs checked, as "spotcheck"): add it to
#                              CONSUMERS to compare two builds in one command; a column gives
#                              each row's ratio to it. Runs alternate between the consumers.
# Logs of every run stay in /tmp/spotcheck-bench.XXXXXX (printed at the start).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${BIN:-$ROOT/target/release}
REPEATS=${REPEATS:-3}
READINGS_B1=${READINGS_B1:-200000}
READINGS_B100=${READINGS_B100:-2000000}
BROKERS=${BROKERS:-embedded mosquitto}
SIZES=${SIZES:-1 100}
CONSUMERS=${CONSUMERS:-ceiling inproc python spotcheck spotcheck-noauth}
AGENTS=${AGENTS:-4}
CONNECTIONS=${CONNECTIONS:-0}
COLLECTOR_CONNECTIONS=${COLLECTOR_CONNECTIONS:-}
TIMEOUT=${TIMEOUT:-300}
MOSQUITTO=${MOSQUITTO:-/usr/sbin/mosquitto}
VENV=$ROOT/target/bench-venv
PAHO=paho-mqtt==2.1.0

WORK=$(mktemp -d /tmp/spotcheck-bench.XXXXXX)
echo "[ingest] logs in $WORK" >&2
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT
log() { echo "[ingest] $*" >&2; }

# --- set-up -------------------------------------------------------------------------------
if [[ -z ${SKIP_BUILD:-} ]]; then
    log "building release binaries"
    (cd "$ROOT" && cargo build --release -p spotcheck-bench >&2)
fi
if [[ -z ${SKIP_BUILD:-} && $CONSUMERS == *spotcheck* ]]; then
    (cd "$ROOT" && cargo build --release -p spotcheck-collector >&2) ||
        log "spotcheck-collector does not build; its rows will be skipped"
fi
if [[ $CONSUMERS == *python* ]]; then
    [[ -x $VENV/bin/python ]] || python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q "$PAHO" >&2
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
now_ns() { date +%s%N; }

# wait_for SECONDS COMMAND...: retries COMMAND every 50 ms until it succeeds.
wait_for() {
    local deadline=$(($(date +%s) + $1)); shift
    until "$@"; do
        (($(date +%s) < deadline)) || return 1
        sleep 0.05
    done
}
port_open() { (: <"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
said_ready() { grep -q '^ready' "$1" 2>/dev/null; }
healthy() { curl -sf -o /dev/null "http://127.0.0.1:$1/healthz"; }
healthy_or_dead() { healthy "$1" || ! kill -0 "$2" 2>/dev/null; }
field() { sed -n "s/^$1=//p" "$2" | tail -n1; }

start() { # start LOGPREFIX COMMAND...: runs COMMAND in the background, sets $PID.
    local prefix=$1; shift
    "$@" >"$prefix.out" 2>"$prefix.err" &
    PID=$!
    PIDS+=("$PID")
}
stop() { # stop PID: SIGTERM, then SIGKILL after 5 s.
    kill "$1" 2>/dev/null || true
    wait_for 5 not_running "$1" || kill -9 "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}
not_running() { ! kill -0 "$1" 2>/dev/null; }

collector_config() { # collector_config FILE HTTP_PORT BROKER_URL|"" EMBEDDED_PORT|"" AUTH(true|false)
    local file=$1 http=$2 broker=$3 embedded=$4 auth=$5 i
    {
        echo "data_dir = \"$(dirname "$file")/data\""
        echo "[ingest]"
        echo "require_agent_auth = $auth"
        echo "[http]"
        echo "listen = \"127.0.0.1:$http\""
        echo "[mqtt]"
        if [[ -n $broker ]]; then echo "broker = \"$broker\""; else echo "embedded_listen = \"127.0.0.1:$embedded\""; fi
        # The load generator does not re-send what the broker dropped unread (agents do): let
        # the embedded broker keep a whole run, as bench-broker does.
        echo "embedded_buffer_bytes = 1073741824"
        if [[ -n $COLLECTOR_CONNECTIONS ]]; then echo "connections = $COLLECTOR_CONNECTIONS"; fi
        if [[ -n ${COLLECTOR_GROUP:-} ]]; then echo "shared_group = \"$COLLECTOR_GROUP\""; fi
        if [[ -n ${SINK_URL:-} ]]; then printf '[sink]\nurl = "%s"\n' "$SINK_URL"; fi
        for ((i = 0; i < AGENTS; i++)); do
            printf '[[agents]]\nid = "bench-%d"\nentity = "bench-e%d"\ndomain = "pool"\n' "$i" "$i"
        done
    } >"$file"
}

# run_once BROKER SIZE CONSUMER RUN: prints readings/s, or "skip" / "fail" (reason on stderr).
run_once() {
    local broker=$1 size=$2 consumer=$3 run=$4
    local total=$((size == 1 ? READINGS_B1 : READINGS_B100))
    local batches=$((total / size))
    local dir=$WORK/$broker-$size-$consumer-$run
    PIDS=()
    trap cleanup EXIT # this runs in a subshell: stop its own processes however it ends
    mkdir -p "$dir"
    local port; port=$(free_port)
    local broker_pid="" consumer_pid="" http="" result=""
    LOADGEN_AUTH=()

    # Broker. The spotcheck and inproc consumers on "embedded" run their own embedded broker.
    if [[ $consumer == inproc && $broker != embedded ]]; then
        echo skip; return
    elif [[ $broker == mosquitto ]]; then
        # Mosquitto drops QoS 1 messages beyond max_queued_messages for a subscriber that
        # falls behind; allow a whole run so a slow consumer is measured, not starved.
        local queued=$((batches > 100000 ? batches : 100000))
        printf 'listener %s 127.0.0.1\nallow_anonymous true\nmax_inflight_messages 1000\nmax_queued_messages %s\n' \
            "$port" "$queued" >"$dir/mosquitto.conf"
        start "$dir/broker" "$MOSQUITTO" -c "$dir/mosquitto.conf"; broker_pid=$PID
        wait_for 10 port_open "$port" || { log "mosquitto did not start"; echo fail; return; }
    elif [[ $consumer != spotcheck* && $consumer != inproc ]]; then
        start "$dir/broker" "$BIN/bench-broker" --listen "127.0.0.1:$port"; broker_pid=$PID
        wait_for 10 said_ready "$dir/broker.out" || { log "bench-broker did not start"; echo fail; return; }
    fi

    # Consumer, started and subscribed before the load starts.
    case $consumer in
    ceiling)
        start "$dir/consumer" "$BIN/ceiling" --broker "127.0.0.1:$port" --batches "$batches" --batch-size "$size"
        consumer_pid=$PID
        wait_for 10 said_ready "$dir/consumer.out" || { log "ceiling did not subscribe"; result=fail; } ;;
    inproc)
        start "$dir/consumer" "$BIN/bench-broker" --listen "127.0.0.1:$port" --count "$batches"
        consumer_pid=$PID
        wait_for 10 said_ready "$dir/consumer.out" || { log "bench-broker --count did not start"; result=fail; } ;;
    python)
        start "$dir/consumer" "$VENV/bin/python" "$ROOT/bench/python/baseline_collector.py" \
            --broker "127.0.0.1:$port" --readings "$total" --db "$dir/baseline.db"
        consumer_pid=$PID
        wait_for 10 said_ready "$dir/consumer.out" || { log "python baseline did not subscribe"; result=fail; } ;;
    spotcheck | spotcheck-noauth | spotcheck-baseline)
        local auth=true collector=$BIN/spotcheck-collector
        [[ $consumer == spotcheck-noauth ]] && auth=false
        [[ $consumer == spotcheck-baseline ]] && collector=${BASELINE_COLLECTOR:-}
        if [[ ! -x $collector ]]; then
            log "$consumer: collector binary '$collector' is missing; skipped"; result=skip
        else
            http=$(free_port)
            if [[ $broker == mosquitto ]]; then
                collector_config "$dir/collector.toml" "$http" "mqtt://127.0.0.1:$port" "" "$auth"
            else
                collector_config "$dir/collector.toml" "$http" "" "$port" "$auth"
            fi
            # Builds from before the bounded broker buffers (issue 16) refuse the setting; their
            # embedded broker kept what it was sent anyway.
            grep -qa embedded_buffer_bytes "$collector" || sed -i '/^embedded_buffer_bytes/d' "$dir/collector.toml"
            # Each loadgen agent gets a credential (the embedded broker wants a login).
            mkdir -p "$dir/credentials"
            for ((i = 0; i < AGENTS; i++)); do
                "$collector" agents add "bench-$i" --data "$dir/data" \
                    --out "$dir/credentials/bench-$i.credential" 2>>"$dir/agents.err"
            done
            LOADGEN_AUTH=(--credentials "$dir/credentials")
            [[ $auth == false ]] && LOADGEN_AUTH+=(--no-sign)
            LOADGEN_AUTH+=(--mac "${LOADGEN_MAC:-blake3}")
            start "$dir/consumer" "$collector" serve --config "$dir/collector.toml"
            consumer_pid=$PID
            wait_for 30 healthy_or_dead "$http" "$consumer_pid"
            healthy "$http" || {
                log "spotcheck: collector did not become healthy; skipped (see $dir/consumer.err)"; result=skip; }
        fi ;;
    esac

    local sampler="" perf=""
    if [[ -z $result && -n ${THREAD_CPU:-} ]]; then
        # Matches the run's broker (its config in $dir, or its port), consumer and loadgen.
        python3 "$ROOT/bench/thread-cpu.py" --match "$dir/" --match "127.0.0.1:$port" \
            --per "$batches" --out "$dir/threads.tsv" >"$dir/sampler.out" &
        sampler=$!; PIDS+=("$sampler")
        wait_for 10 said_ready "$dir/sampler.out" || log "thread-cpu.py did not start"
    fi
    if [[ -z $result && -n ${PERF:-} && -n $consumer_pid ]]; then
        # shellcheck disable=SC2086 # PERF_ARGS is a list of options
        perf record ${PERF_ARGS:--F 499 --call-graph dwarf,16384} -o "$dir/perf.data" \
            -p "$consumer_pid" >"$dir/perf.out" 2>&1 &
        perf=$!; PIDS+=("$perf")
    fi

    if [[ -z $result ]]; then
        if ! "$BIN/loadgen" --broker "127.0.0.1:$port" --batches "$batches" --batch-size "$size" \
            --agents "$AGENTS" --connections "$CONNECTIONS" "${LOADGEN_AUTH[@]}" >"$dir/loadgen.out" 2>"$dir/loadgen.err"; then
            log "loadgen failed: $(tail -n1 "$dir/loadgen.err")"; result=fail
        fi
    fi

    if [[ -z $result ]]; then
        local start_ns end_ns=""; start_ns=$(field start_unix_ns "$dir/loadgen.out")
        local deadline=$(($(date +%s) + TIMEOUT))
        if [[ $consumer == spotcheck* ]]; then
            # One light poller (not curl | jq per poll, which took CPU from the collector).
            "$BIN/wait-ingested" --port "$http" --total "$total" --timeout-s "$TIMEOUT" \
                >"$dir/wait.out" 2>"$dir/wait.err" || true
            end_ns=$(field done_unix_ns "$dir/wait.out")
        elif [[ $consumer == inproc ]]; then # it keeps serving after its count
            while (($(date +%s) < deadline)) && kill -0 "$consumer_pid" 2>/dev/null; do
                end_ns=$(field done_unix_ns "$dir/consumer.out")
                [[ -n $end_ns ]] && break
                sleep 0.05
            done
        else
            while (($(date +%s) < deadline)) && kill -0 "$consumer_pid" 2>/dev/null; do sleep 0.05; done
            end_ns=$(field done_unix_ns "$dir/consumer.out")
        fi
        if [[ -z $end_ns ]]; then
            log "$consumer did not receive all $total readings (see $dir)"; result=fail
        else
            result=$(python3 -c "print(round($total * 1e9 / ($end_ns - $start_ns)))")
        fi
    fi
    if [[ -n $perf ]]; then kill -INT "$perf" 2>/dev/null || true; wait "$perf" 2>/dev/null || true; fi
    if [[ -n $sampler ]]; then
        kill -TERM "$sampler" 2>/dev/null || true; wait "$sampler" 2>/dev/null || true
        log "$broker $size $consumer run $run, CPU by thread:"; column -t -s $'\t' "$dir/threads.tsv" >&2
    fi
    if [[ $broker == mosquitto ]] && grep -q 'dropped' "$dir/broker.out" "$dir/broker.err" 2>/dev/null; then
        log "mosquitto dropped messages: run invalid"; result=fail
    fi
    [[ -n $consumer_pid ]] && stop "$consumer_pid"
    [[ -n $broker_pid ]] && stop "$broker_pid"
    # Keep the logs of every run in $WORK; the databases only of runs that did not count.
    [[ $result =~ ^[0-9]+$ ]] && rm -rf "$dir/data" "$dir"/baseline.db*
    echo "$result"
}

median() { # median VALUES...: numeric median, or the first non-number if any run did not count.
    local v
    for v in "$@"; do [[ $v =~ ^[0-9]+$ ]] || { echo "$v"; return; }; done
    printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : int((a[NR/2] + a[NR/2+1]) / 2)}'
}
ratio() { [[ $1 =~ ^[0-9]+$ && $2 =~ ^[0-9]+$ ]] && python3 -c "print(f'{$1 / $2:.2f}×')" || echo "—"; }
thousands() { [[ $1 =~ ^[0-9]+$ ]] && python3 -c "print(f'{$1:,}')" || echo "$1"; }

# --- runs ---------------------------------------------------------------------------------
declare -A MEDIAN
for broker in $BROKERS; do
    for size in $SIZES; do
        # Run 1 of every consumer, then run 2 of every one, ...: a busy spell of the machine
        # is shared between the consumers instead of falling on one of them.
        declare -A RESULTS=()
        for ((run = 1; run <= REPEATS; run++)); do
            for consumer in $CONSUMERS; do
                [[ ${RESULTS[$consumer]:-} =~ (skip|fail) ]] && continue # one is enough to say so
                r=$(run_once "$broker" "$size" "$consumer" "$run")
                log "$broker, batch $size, $consumer, run $run: $r"
                RESULTS[$consumer]+="$r "
            done
        done
        for consumer in $CONSUMERS; do
            # shellcheck disable=SC2086 # the runs are space-separated on purpose
            MEDIAN[$broker/$size/$consumer]=$(median ${RESULTS[$consumer]:-skip})
        done
        unset RESULTS
    done
done

# --- report -------------------------------------------------------------------------------
echo "Machine: $(uname -m), $(nproc) cores, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)," \
    "$(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo) RAM; $(date -u '+%Y-%m-%d %H:%M UTC');" \
    "load average at the end $(cut -d' ' -f1-3 /proc/loadavg)"
echo "Runs: median of $REPEATS; $READINGS_B1 readings per run with batches of 1, $READINGS_B100 with batches of 100;" \
    "$AGENTS agents over $([[ $CONNECTIONS == 0 ]] && echo "$AGENTS" || echo "$CONNECTIONS") loadgen connection(s)"
echo
BASE_HEAD="" BASE_RULE=""
[[ $CONSUMERS == *spotcheck-baseline* ]] && BASE_HEAD=" ratio to spotcheck-baseline |" BASE_RULE="---:|"
echo "| broker | batch | consumer | readings/s | ratio to ceiling | ratio to inproc | ratio to python | ratio to spotcheck-noauth |$BASE_HEAD"
echo "|---|---:|---|---:|---:|---:|---:|---:|$BASE_RULE"
for broker in $BROKERS; do
    for size in $SIZES; do
        for consumer in $CONSUMERS; do
            [[ $consumer == inproc && $broker != embedded ]] && continue
            v=${MEDIAN[$broker/$size/$consumer]}
            c=${MEDIAN[$broker/$size/ceiling]:-}
            i=${MEDIAN[$broker/$size/inproc]:-}
            p=${MEDIAN[$broker/$size/python]:-}
            n=${MEDIAN[$broker/$size/spotcheck-noauth]:-}
            b=""; [[ -n $BASE_HEAD ]] && b=" $(ratio "$v" "${MEDIAN[$broker/$size/spotcheck-baseline]:-}") |"
            echo "| $broker | $size | $consumer | $(thousands "$v") | $(ratio "$v" "$c") | $(ratio "$v" "$i") | $(ratio "$v" "$p") | $(ratio "$v" "$n") |$b"
        done
    done
done
