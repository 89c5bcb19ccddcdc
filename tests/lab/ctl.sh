#!/usr/bin/env bash
# Starts and stops the lab:  tests/lab/ctl.sh start|stop DIR [NET] [PROFILE]
# start runs lab.js in the background and waits for DIR/env (written by the
# lab when every service is up); stop kills exactly the PIDs listed there.
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
    if alive "$pids"; then echo "lab: already running ($dir/env)"; exit 0; fi
    rm -f "$dir/env"
  fi
  setsid node tests/lab/lab.js --env "$dir/env" --state "$dir" --net "$net" \
    --profile "$profile" > "$dir/lab.log" 2>&1 < /dev/null &
  pid=$!
  for _ in $(seq 300); do
    [ -f "$dir/env" ] && { echo "lab: up ($dir/env)"; exit 0; }
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
  [ -n "$pids" ] && kill $pids 2>/dev/null
  for _ in $(seq 50); do alive "$pids" || break; sleep 0.1; done
  alive "$pids" && kill -9 $pids 2>/dev/null
  rm -f "$dir/env"
  echo "lab: stopped"
  ;;
*) echo "usage: $0 start|stop DIR [NET] [PROFILE]" >&2; exit 2 ;;
esac
