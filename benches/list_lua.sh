#!/usr/bin/env bash
# Redis time of one `list.lua` call (the task list's page), from `INFO commandstats`
# usec_per_call on a private redis-server: 10,000 finished tasks of one owner in the index, 2,000
# calls per case. Cases: the newest page of 20 and of 100, and two filters that match nothing
# (the call reads its whole budget of 400 index members and returns a short page with `next`).
#   benches/list_lua.sh [port]      (needs redis-server, redis-cli, redis-benchmark)
set -euo pipefail
cd "$(dirname "$0")/.."
PORT=${1:-6399}
DIR=$(mktemp -d)
redis-server --port "$PORT" --bind 127.0.0.1 --save '' --appendonly no --daemonize yes \
  --pidfile "$DIR/redis.pid" --logfile "$DIR/redis.log" --dir "$DIR"
R="redis-cli -p $PORT"
trap '$R SHUTDOWN NOSAVE >/dev/null 2>&1 || true; rm -rf "$DIR"' EXIT
for _ in $(seq 50); do $R PING >/dev/null 2>&1 && break; sleep 0.1; done
LUA=src/tasks/store/redis/lua
SHA=$($R SCRIPT LOAD "$(cat $LUA/prelude.lua $LUA/list.lua)")
# Records as submit.lua writes the fields list.lua reads, and the owner's index.
$R EVAL "
for i = 1, 10000 do
  local id = string.format('00000000-0000-4000-8000-%012d', i)
  redis.call('HSET', ARGV[1] .. ':task:' .. id, 'status', 'SUCCESS', 'service', 'face_liveness',
    'updated_ms', '1733300000001', 'owner', 'o')
  redis.call('ZADD', KEYS[1], 0, string.format('%013d', 1733300000000 + i) .. '.' .. id)
end
return redis.call('ZCARD', KEYS[1])" 1 bench:tasks:owner:o bench >/dev/null
for case in "20 - -" "100 - -" "20 STARTED -" "20 - ocr_card"; do
  set -- $case
  status=${2#-}; service=${3#-}
  $R CONFIG RESETSTAT >/dev/null
  redis-benchmark -p "$PORT" -q -n 2000 -c 1 EVALSHA "$SHA" 1 bench:tasks:owner:o bench:task: '' "$1" "$status" "$service" 400 >/dev/null 2>&1
  usec=$($R INFO commandstats | tr -d '\r' | sed -n 's/^cmdstat_evalsha:.*usec_per_call=\([0-9.]*\).*/\1/p')
  echo "limit=$1 status=${status:-any} service=${service:-any}: ${usec} µs per call"
done
