#!/usr/bin/env bash
# Browser-shape ingest: 4-event batches, 64 keep-alive connections, 10 s, one
# Redis shared by every run (FLUSHALL between), Redis commands and CPU from
# INFO deltas.
# Usage: bench/browser-shape.sh REDIS_PORT NAME SERVER_BINARY edge|baseline
# (glimpse-load from target/release, or $GLIMPSE_LOAD). Stops the server it
# starts by its pid; the Redis is the caller's.
set -u
PORT=$1 NAME=$2 BIN=$3 KIND=$4
R="redis-cli -p $PORT"
stat() { $R info all | tr -d '\r' | awk -F: -v k="$1" '$1==k{print $2}'; }
$R flushall >/dev/null
d=$(mktemp -d)
if [ "$KIND" = edge ]; then
  "$BIN" --listen 127.0.0.1:0 --data-dir "$d" --store redis --redis-url redis://127.0.0.1:$PORT/ --sync-interval 1s > "$d/out" 2>&1 &
else
  "$BIN" --listen 127.0.0.1:0 --redis-url redis://127.0.0.1:$PORT/ > "$d/out" 2>&1 &
fi
pid=$!
for i in $(seq 1 100); do addr=$(grep -o '127.0.0.1:[0-9]*' "$d/out" | head -1); [ -n "$addr" ] && break; sleep 0.1; done
[ -n "$addr" ] || { echo "$BIN did not print its address in 10 s" >&2; cat "$d/out" >&2; kill $pid; exit 1; }
c0=$(stat total_commands_processed); u0=$(stat used_cpu_user); s0=$(stat used_cpu_sys)
"${GLIMPSE_LOAD:-target/release/glimpse-load}" --target "$addr" --events 4 --concurrency 64 --duration 10s > "$d/load" 2>&1
kill -INT $pid; wait $pid
c1=$(stat total_commands_processed); u1=$(stat used_cpu_user); s1=$(stat used_cpu_sys)
echo "== $NAME: redis_cmds=$((c1-c0)) redis_cpu_s=$(echo "$u1-$u0+$s1-$s0" | bc)"; cat "$d/load"
rm -rf "$d"
