#!/usr/bin/env bash
# Starts and stops the lab:  tests/lab/ctl.sh start|stop DIR [NET] [PROFILE]
# start runs lab.js in the background and waits for DIR/env (written by the
# lab when every service is up), then starts the real BIND 9 (bind/start.sh)
# and adds its DNS_* keys and PID to DIR/env; stop kills exactly the PIDs
# listed there.
set -u
cmd=${1:?start or stop}
dir=${2:?state directory}
net=${3:-127.77}
profile=${4:-test}
cd "$(dirname "$0")/../.."

alive() { [ -n "$1" ] && kill -0 $1 2>/dev/null; }

case "$cmd" in
start)
  mkdir -p "$dir"
  if [ -f "$dir/env" ]; then
    pids=$(. "$dir/env" && echo "$LAB_PIDS")
    first=${pids%% *}
    if alive "$first"; then echo "lab: already running ($dir/env)"; exit 0; fi
    rm -f "$dir/env"
  fi
  setsid node tests/lab/lab.js --env "$dir/env" --state "$dir" --net "$net" \
    --profile "$profile" > "$dir/lab.log" 2>&1 < /dev/null &
  pid=$!
  for _ in $(seq 300); do
    if [ -f "$dir/env" ]; then
      if ! named_pid=$(bash tests/lab/bind/start.sh "$dir/bind" "$net" 2> "$dir/bind.log"); then
        echo "lab: BIND did not start; its log:" >&2
        tail -n 20 "$dir/bind.log" >&2
        kill $pid 2>/dev/null
        rm -f "$dir/env"
        exit 1
      fi
      grep -v '^LAB_PIDS=' "$dir/env" > "$dir/env.tmp"
      cat "$dir/bind/env" >> "$dir/env.tmp"
      echo "LAB_PIDS='$pid $named_pid'" >> "$dir/env.tmp"
      chmod 600 "$dir/env.tmp" && mv "$dir/env.tmp" "$dir/env"
      echo "lab: up ($dir/env)"
      exit 0
    fi
    if ! alive $pid; then
      echo "lab: failed to start; its log:" >&2
      tail -n 30 "$dir/lab.log" >&2
      exit 1
    fi
    sleep 0.1
  done
  echo "lab: not up after 30 s; its log:" >&2
  tail -n 30 "$dir/lab.log" >&2
  kill $pid 2>/dev/null
  exit 1
  ;;
stop)
  [ -f "$dir/env" ] || { echo "lab: not running"; exit 0; }
  pids=$(. "$dir/env" && echo "$LAB_PIDS")
  [ -d "$dir/bind" ] && bash tests/lab/bind/stop.sh "$dir/bind"  # also drops its lo address
  [ -n "$pids" ] && kill $pids 2>/dev/null
  for p in $pids; do
    for _ in $(seq 50); do alive "$p" || break; sleep 0.1; done
    alive "$p" && kill -9 $p 2>/dev/null
  done
  rm -f "$dir/env"
  echo "lab: stopped"
  ;;
*) echo "usage: $0 start|stop DIR [NET] [PROFILE]" >&2; exit 2 ;;
esac
