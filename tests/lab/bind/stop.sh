#!/usr/bin/env bash
# Stops the lab's BIND 9 started by start.sh:  tests/lab/bind/stop.sh DIR
# Kills named by the PID in DIR/env (SIGTERM, then SIGKILL after 5 s) and
# removes the loopback address start.sh added (DIR/alias), if any.
set -u
dir=${1:?usage: stop.sh DIR}
pid=$(sed -n "s/^DNS_PID='\([0-9]*\)'$/\1/p" "$dir/env" 2>/dev/null)
if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
  kill "$pid"
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
fi
if [ -f "$dir/alias" ]; then
  ip addr del "$(cat "$dir/alias")" dev lo 2>/dev/null
  rm -f "$dir/alias"
fi
rm -f "$dir/env"
