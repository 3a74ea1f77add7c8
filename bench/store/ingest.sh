#!/usr/bin/env bash
# Storing committed batches on SQLite (the ingest writer) against PostgreSQL's options
# (issue 14): starts a private PostgreSQL (initdb into a scratch directory, a free port,
# default durability: fsync and synchronous_commit on), runs `store-ingest` against it, stops it.
#
# Usage: bench/store/ingest.sh [store-ingest options, e.g. --batches 20000 --rounds 3]
# Knobs: SKIP_BUILD=1 (use target/release/store-ingest as it is).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
if [[ -z ${SKIP_BUILD:-} ]]; then
  cargo build --release -q -p spotcheck-bench --bin store-ingest --manifest-path "$ROOT/Cargo.toml"
fi
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
DATA=$(mktemp -d /tmp/spotcheck-pgbench.XXXXXX)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
as_pg() { if [[ $(id -u) == 0 ]]; then chown -R postgres:postgres "$DATA"; setpriv --reuid=postgres --regid=postgres --init-groups -- "$@"; else "$@"; fi; }
cleanup() { as_pg "$PGBIN/pg_ctl" -D "$DATA/db" -m fast stop >/dev/null 2>&1 || true; rm -rf "$DATA"; }
trap cleanup EXIT
as_pg "$PGBIN/initdb" -D "$DATA/db" -U postgres -A trust -E UTF8 --locale=C >/dev/null
as_pg "$PGBIN/pg_ctl" -D "$DATA/db" -l "$DATA/log" -w \
  -o "-p $PORT -k $DATA -c listen_addresses=127.0.0.1" start >/dev/null
"$PGBIN/createdb" -h 127.0.0.1 -p "$PORT" -U postgres bench
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB; $("$PGBIN/postgres" --version); $(date -u +%FT%TZ)"
"${STORE_INGEST:-$ROOT/target/release/store-ingest}" --postgres "postgres://postgres@127.0.0.1:$PORT/bench" "$@"
