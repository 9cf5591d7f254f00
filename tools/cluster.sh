#!/usr/bin/env bash
# A local cluster in one command (`make cluster`): a throwaway PostgreSQL and Redis
# (Debian's packages, on free ports, in a temporary directory, no system service) and
# liveview in roles — 1 lb, 3 app, 2 worker, 1 dashboard — each its own process. Prints
# the URLs; Ctrl-C stops everything and removes the directory.
#
# `tools/cluster.sh bench ARGS…` starts the PostgreSQL and Redis only and runs
# `liveview bench pipeline ARGS…` against a cluster on them (BENCHMARKS.md).
#
# BINARY (default target/release/liveview), LB_PORT (8000), DASHBOARD_PORT (3000).
set -euo pipefail

BINARY=${BINARY:-target/release/liveview}
LB_PORT=${LB_PORT:-8000}
DASHBOARD_PORT=${DASHBOARD_PORT:-3000}
[ -x "$BINARY" ] || { echo "no $BINARY: run make build first" >&2; exit 1; }

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

dir=$(mktemp -d -t liveview-cluster-XXXXXX)
pids=()
postgres_bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
as_postgres=()
if [ "$(id -u)" = 0 ]; then
  # PostgreSQL refuses to run as root: its cluster belongs to the postgres user.
  chown postgres "$dir"
  as_postgres=(runuser -u postgres --)
fi

stop() {
  # A second Ctrl-C must not cut the cleanup short.
  trap '' INT TERM
  trap - EXIT
  stopping=1
  echo
  echo "stopping the cluster"
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  # Each process finishes in-flight work within its 10 s grace; then it is killed.
  for _ in $(seq 150); do
    alive=0
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 0.1
  done
  for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  [ -n "${redis_pid:-}" ] && kill "$redis_pid" 2>/dev/null && wait "$redis_pid" 2>/dev/null || true
  [ -d "$dir/pg" ] && "${as_postgres[@]}" "$postgres_bin/pg_ctl" -D "$dir/pg" stop -m fast -w >/dev/null 2>&1 || true
  rm -rf "$dir"
}
trap stop INT TERM EXIT

pg_port=$(free_port)
"${as_postgres[@]}" "$postgres_bin/initdb" -D "$dir/pg" -A trust -U postgres -E UTF8 >/dev/null
"${as_postgres[@]}" "$postgres_bin/pg_ctl" -D "$dir/pg" -l "$dir/pg.log" -w \
  -o "-p $pg_port -c listen_addresses=127.0.0.1 -k $dir" start >/dev/null
redis_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no --dir "$dir" >"$dir/redis.log" 2>&1 &
redis_pid=$!

export LIVEVIEW_DATABASE_URL="postgres://postgres@127.0.0.1:$pg_port/postgres"
export LIVEVIEW_BUS_URL="redis://127.0.0.1:$redis_port"
export LIVEVIEW_CLUSTER_SECRET=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
export RUST_LOG=${RUST_LOG:-warn}

if [ "${1:-}" = bench ]; then
  shift
  "$BINARY" bench pipeline --database-url "$LIVEVIEW_DATABASE_URL" --bus-url "$LIVEVIEW_BUS_URL" \
    --cluster-secret "$LIVEVIEW_CLUSTER_SECRET" "$@"
  exit
fi

start() {
  local name=$1; shift
  mkdir -p "$dir/$name"
  "$BINARY" --data "$dir/$name" "$@" >"$dir/$name.log" 2>&1 &
  pids+=($!)
}

app_addrs=()
for n in 1 2 3; do
  addr="127.0.0.1:$(free_port)"
  app_addrs+=("$addr")
  start "app-$n" --role app --listen "$addr" --lb "127.0.0.1:$LB_PORT"
done
smtp="127.0.0.1:$(free_port)"
start worker-1 --role worker --smtp-sink "$smtp"
start worker-2 --role worker --smtp-url "smtp://$smtp"
start lb --role lb --lb "127.0.0.1:$LB_PORT" --backends "$(IFS=,; echo "${app_addrs[*]}")"
start dashboard --role dashboard --dashboard "127.0.0.1:$DASHBOARD_PORT" --lb "127.0.0.1:$LB_PORT" --smtp-url "smtp://$smtp"

for _ in $(seq 100); do
  curl -sf "http://127.0.0.1:$DASHBOARD_PORT/healthz" >/dev/null 2>&1 && break
  sleep 0.2
done
cat <<TEXT
Live View cluster: 1 lb, 3 app, 2 worker, 1 dashboard on PostgreSQL (port $pg_port) and Redis (port $redis_port)
Live View dashboard: http://127.0.0.1:$DASHBOARD_PORT/
Status page:         http://127.0.0.1:$DASHBOARD_PORT/status
Load balancer:       http://127.0.0.1:$LB_PORT/
App servers:         ${app_addrs[*]}
Logs:                $dir/*.log
Ctrl-C stops everything.
TEXT
wait -n "${pids[@]}" || true
[ -n "${stopping:-}" ] || echo "a process of the cluster stopped; see its log in $dir" >&2
