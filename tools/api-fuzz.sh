#!/usr/bin/env bash
# Fuzzes a freshly started liveview against its own OpenAPI documents with schemathesis
# (PyPI): the balancer's API (as a signed-in user) and the dashboard's. A run fails on
# any 5xx and on any response outside its documented schema.
#
# Left out of the balancer's run: `POST /api/auth/logout`, which would end the fuzzer's
# own session and leave every later authenticated call at its 401 (as a run did); the
# integration tests cover it.
#
# Left out of the dashboard's run: `POST /api/live-view/simulate` and
# `PUT /api/live-view/controls`. Both start work that outlives the request (thousands of
# argon2 signups, a continuous load of up to 1,000 requests a second, 30-second delays in
# every stage); their bad input is covered by the integration tests.
set -euo pipefail
cd "$(dirname "$0")/.."

SCHEMATHESIS_VERSION=4.32.5
BINARY=${BINARY:-target/release/liveview}
VENV=tools/venv
if [ "$("$VENV/bin/schemathesis" --version 2>/dev/null)" != "schemathesis, version $SCHEMATHESIS_VERSION" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet "schemathesis==$SCHEMATHESIS_VERSION"
fi

work=$(mktemp -d)
"$BINARY" --dashboard 127.0.0.1:0 --lb 127.0.0.1:0 --server-port-base 0 --smtp-sink 127.0.0.1:0 \
  --data "$work/data" >"$work/stdout" 2>"$work/log" &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 200); do
  grep -q '^Load balancer:' "$work/stdout" && break
  kill -0 "$pid" 2>/dev/null || { cat "$work/log"; exit 1; }
  sleep 0.1
done
dashboard=$(sed -n 's|^Live View dashboard: *\(http://[^/]*\)/$|\1|p' "$work/stdout")
lb=$(sed -n 's|^Load balancer: *\(http://[^/]*\)/$|\1|p' "$work/stdout")

# A user, so the authenticated routes are reached past their 401.
curl -sf -X POST "$lb/api/auth/signup" -H 'content-type: application/json' \
  -d '{"email":"fuzz@example.com","name":"Fuzz","password":"fuzz-password"}' >/dev/null
token=$(curl -sf -X POST "$lb/api/auth/login" -H 'content-type: application/json' \
  -d '{"email":"fuzz@example.com","password":"fuzz-password"}' |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["token"])')

fuzz() {
  "$VENV/bin/schemathesis" run "$1/api/openapi.json" --url "$1" \
    --checks not_a_server_error,response_schema_conformance \
    --max-examples 20 --workers 1 --request-timeout 15 --seed 1 --no-color "${@:2}"
}
echo "== the notification system's API, through the balancer ($lb)"
fuzz "$lb" -H "Authorization: Bearer $token" --exclude-path /api/auth/logout
echo "== the dashboard's API ($dashboard)"
fuzz "$dashboard" --exclude-path /api/live-view/simulate --exclude-path /api/live-view/controls
