#!/usr/bin/env bash
# Scaling on one broker and one PostgreSQL (issue 14): readings/s with 1, 2 and 3 collectors
# sharing one Mosquitto (a shared subscription, mqtt.shared_group) and one PostgreSQL, and
# SQLite's single collector in the same run, batches of 100. Goal: PostgreSQL with one
# collector at least 0.5x SQLite's figure.
#
# For each configuration x REPEATS: a fresh Mosquitto, a fresh database (PostgreSQL: a new
# database on the one private server this script starts; SQLite: a new data directory), the
# collectors started and healthy, the agents' credentials issued into that store; then
# `loadgen` publishes READINGS readings from AGENTS agents at QoS 1 and `wait-ingested`
# polls every collector's /api/v1/stats until their sum reaches READINGS.
# Throughput = READINGS / (loadgen's clock start -> the sum reached). Prints the median of
# each configuration as a Markdown table, with the machine it ran on.
#
# loadgen's batches carry no `after`: each is stored on arrival. Real agents' batches do, and
# on a cluster each waits for its predecessor's commit on another collector (ingest/order.rs):
# this measures the store and the broker, not that per-agent ordering.
#
# Usage: bench/store/scale.sh        (release build; run on a quiet machine)
# Knobs (environment):
#   REPEATS=3            runs per configuration (median reported)
#   READINGS=2000000     readings per run
#   BATCH=100            readings per batch
#   AGENTS=12            loadgen agents (bench-0 ... bench-{AGENTS-1}), one connection each
#   CONFIGS="sqlite-1 postgres-1 postgres-2 postgres-3"
#                        store-collectors pairs to run (sqlite only with 1)
#   RULES=true           the collectors' rules.enabled (the rule engine claims each entity's
#                        row on PostgreSQL: with it on, collectors sharing an agent's entity
#                        take turns; docs/storage.md, "What that costs")
#   CONNECTIONS=         each collector's mqtt.connections (empty: its default)
#   PROFILE=release      or `debug` (a quick check that the script runs; not a measurement)
#   TIMEOUT=300          seconds a run may take before it counts as failed
#   SKIP_BUILD=1         use the binaries already built
# Logs of every run stay in /tmp/spotcheck-scale.XXXXXX (printed at the start).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
PROFILE=${PROFILE:-release}
BIN=$ROOT/target/$PROFILE
REPEATS=${REPEATS:-3}
READINGS=${READINGS:-2000000}
BATCH=${BATCH:-100}
AGENTS=${AGENTS:-12}
CONFIGS=${CONFIGS:-sqlite-1 postgres-1 postgres-2 postgres-3}
RULES=${RULES:-true}
CONNECTIONS=${CONNECTIONS:-}
TIMEOUT=${TIMEOUT:-300}
MOSQUITTO=${MOSQUITTO:-/usr/sbin/mosquitto}
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)

WORK=$(mktemp -d /tmp/spotcheck-scale.XXXXXX)
PGDATA=$WORK/pg
log() { echo "[scale] $*" >&2; }
log "logs in $WORK"
PIDS=()
as_pg() { if [[ $(id -u) == 0 ]]; then setpriv --reuid=postgres --regid=postgres --init-groups -- "$@"; else "$@"; fi; }
stop_all() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    PIDS=()
}
cleanup() {
    stop_all
    as_pg "$PGBIN/pg_ctl" -D "$PGDATA" -m fast stop >/dev/null 2>&1 || true
    rm -rf "$PGDATA"
}
trap cleanup EXIT

# --- set-up -------------------------------------------------------------------------------
if [[ -z ${SKIP_BUILD:-} ]]; then
    log "building $PROFILE binaries"
    profile_flag=--release
    [[ $PROFILE == debug ]] && profile_flag=
    (cd "$ROOT" && cargo build -q $profile_flag -p spotcheck-collector -p spotcheck-bench \
        --bin spotcheck-collector --bin loadgen --bin wait-ingested >&2)
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_for() { # wait_for SECONDS COMMAND...: retries COMMAND every 50 ms until it succeeds.
    local deadline=$(($(date +%s) + $1)); shift
    until "$@"; do
        (($(date +%s) < deadline)) || return 1
        sleep 0.05
    done
}
port_open() { (: <"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
healthy() { curl -sf -o /dev/null "http://127.0.0.1:$1/healthz"; }
field() { sed -n "s/^$1=//p" "$2" | tail -n1; }

# One private PostgreSQL for the whole run, default durability (fsync, synchronous_commit).
PGPORT=$(free_port)
mkdir -p "$PGDATA"
[[ $(id -u) == 0 ]] && chown postgres:postgres "$PGDATA" "$WORK" && chmod 755 "$WORK"
as_pg "$PGBIN/initdb" -D "$PGDATA" -U postgres -A trust -E UTF8 --locale=C >/dev/null
as_pg "$PGBIN/pg_ctl" -D "$PGDATA" -l "$PGDATA/server.log" -w \
    -o "-p $PGPORT -k $PGDATA -c listen_addresses=127.0.0.1 -c max_connections=200" start >/dev/null

collector_config() { # collector_config FILE HTTP_PORT BROKER_PORT STORE_URL|"" NAME GROUP|""
    local file=$1 http=$2 broker=$3 url=$4 name=$5 group=$6 i
    {
        echo "data_dir = \"$(dirname "$file")/$name\""
        [[ -n $url ]] && printf '[store]\nurl = "%s"\n' "$url"
        printf '[rules]\nenabled = %s\n' "$RULES"
        printf '[http]\nlisten = "127.0.0.1:%s"\n' "$http"
        printf '[mqtt]\nbroker = "mqtt://127.0.0.1:%s"\nclient_id = "%s"\n' "$broker" "$name"
        [[ -n $group ]] && echo "shared_group = \"$group\""
        [[ -n $CONNECTIONS ]] && echo "connections = $CONNECTIONS"
        for ((i = 0; i < AGENTS; i++)); do
            printf '[[agents]]\nid = "bench-%d"\nentity = "bench-e%d"\ndomain = "pool"\n' "$i" "$i"
        done
    } >"$file"
}

# run_once STORE N RUN: prints readings/s, or "fail" (reason on stderr).
run_once() {
    local store=$1 n=$2 run=$3
    trap stop_all EXIT # this runs in a subshell: stop its own processes however it ends
    local dir=$WORK/$store-$n-$run batches=$((READINGS / BATCH))
    local total=$((batches * BATCH)) port url="" group="" i result=""
    mkdir -p "$dir/credentials"
    port=$(free_port)
    # A fresh broker: no sessions left from the previous run. Room for a whole run queued.
    printf 'listener %s 127.0.0.1\nallow_anonymous true\nmax_inflight_messages 1000\nmax_queued_messages %s\npersistence false\n' \
        "$port" "$((batches > 100000 ? batches : 100000))" >"$dir/mosquitto.conf"
    "$MOSQUITTO" -c "$dir/mosquitto.conf" >"$dir/mosquitto.out" 2>"$dir/mosquitto.err" &
    PIDS+=($!)
    wait_for 10 port_open "$port" || { log "mosquitto did not start"; echo fail; return; }

    if [[ $store == postgres ]]; then
        local db="scale_${n}_$run"
        "$PGBIN/createdb" -h 127.0.0.1 -p "$PGPORT" -U postgres "$db"
        url="postgres://postgres@127.0.0.1:$PGPORT/$db"
        for ((i = 0; i < AGENTS; i++)); do
            "$BIN/spotcheck-collector" agents add "bench-$i" --store "$url" \
                --out "$dir/credentials/bench-$i.credential" 2>>"$dir/agents.err" >/dev/null
        done
    else
        for ((i = 0; i < AGENTS; i++)); do
            "$BIN/spotcheck-collector" agents add "bench-$i" --data "$dir/collector-0" \
                --out "$dir/credentials/bench-$i.credential" 2>>"$dir/agents.err" >/dev/null
        done
    fi
    ((n > 1)) && group=scale
    local ports=()
    for ((i = 0; i < n; i++)); do
        local http; http=$(free_port)
        collector_config "$dir/collector-$i.toml" "$http" "$port" "$url" "collector-$i" "$group"
        "$BIN/spotcheck-collector" serve --config "$dir/collector-$i.toml" \
            >"$dir/collector-$i.out" 2>"$dir/collector-$i.err" &
        PIDS+=($!)
        # One at a time: the first migrates the schema and makes the bootstrap admin.
        wait_for 60 healthy "$http" || { log "collector-$i did not become healthy (see $dir)"; result=fail; break; }
        ports+=(--port "$http")
    done

    if [[ -z $result ]]; then
        if ! "$BIN/loadgen" --broker "127.0.0.1:$port" --batches "$batches" --batch-size "$BATCH" \
            --agents "$AGENTS" --connections 0 --credentials "$dir/credentials" \
            >"$dir/loadgen.out" 2>"$dir/loadgen.err"; then
            log "loadgen failed: $(tail -n1 "$dir/loadgen.err")"; result=fail
        fi
    fi
    if [[ -z $result ]]; then
        "$BIN/wait-ingested" "${ports[@]}" --total "$total" --timeout-s "$TIMEOUT" \
            >"$dir/wait.out" 2>"$dir/wait.err" || true
        local start_ns end_ns
        start_ns=$(field start_unix_ns "$dir/loadgen.out")
        end_ns=$(field done_unix_ns "$dir/wait.out")
        if [[ -z $end_ns ]]; then
            log "$store x $n did not commit all $total readings: $(cat "$dir/wait.err")"; result=fail
        else
            result=$(python3 -c "print(round($total * 1e9 / ($end_ns - $start_ns)))")
        fi
    fi
    if grep -q 'dropped' "$dir/mosquitto.out" "$dir/mosquitto.err" 2>/dev/null; then
        log "mosquitto dropped messages: run invalid"; result=fail
    fi
    if grep -q 'panicked at' "$dir"/collector-*.err 2>/dev/null; then
        log "a collector panicked (see $dir): run invalid"; result=fail
    fi
    stop_all
    # Keep the logs; the stores only of runs that did not count.
    if [[ $result =~ ^[0-9]+$ ]]; then
        rm -rf "$dir"/collector-?/spotcheck.db*
        [[ $store == postgres ]] && "$PGBIN/dropdb" -h 127.0.0.1 -p "$PGPORT" -U postgres "scale_${n}_$run"
    fi
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
for config in $CONFIGS; do
    store=${config%-*} n=${config##*-}
    [[ $store == sqlite && $n != 1 ]] && { log "$config: SQLite is one collector's store; skipped"; continue; }
    results=()
    for ((run = 1; run <= REPEATS; run++)); do
        r=$(run_once "$store" "$n" "$run")
        log "$config, run $run: $r"
        results+=("$r")
        [[ $r == fail ]] && break # one is enough to say so
    done
    MEDIAN[$config]=$(median "${results[@]}")
done

# --- report -------------------------------------------------------------------------------
echo "Machine: $(uname -m), $(nproc) cores, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)," \
    "$(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo) RAM; $("$PGBIN/postgres" --version);" \
    "$(date -u '+%Y-%m-%d %H:%M UTC'); load average at the end $(cut -d' ' -f1-3 /proc/loadavg)"
echo "Runs: median of $REPEATS; $READINGS readings per run in batches of $BATCH from $AGENTS loadgen agents;" \
    "$PROFILE build; rules.enabled = $RULES; one Mosquitto, collectors in one shared group when more than one"
echo
echo "| store | collectors | readings/s | per collector | ratio to SQLite |"
echo "|---|---:|---:|---:|---:|"
for config in $CONFIGS; do
    [[ -n ${MEDIAN[$config]:-} ]] || continue
    store=${config%-*} n=${config##*-} v=${MEDIAN[$config]}
    per=$([[ $v =~ ^[0-9]+$ ]] && echo $((v / n)) || echo "—")
    echo "| $store | $n | $(thousands "$v") | $(thousands "$per") | $(ratio "$v" "${MEDIAN[sqlite-1]:-}") |"
done
