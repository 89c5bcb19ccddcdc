#!/usr/bin/env bash
# Starts the lab's BIND 9:  tests/lab/bind/start.sh DIR NET
#   DIR  a writable state directory (config, zone, journal, keys, log, env)
#   NET  the lab net 127.N: named answers on 127.N.53.53, on a free high port
# named listens only on interface addresses, so the address is added to lo
# as a /32 when it is missing (root; DIR/alias records it for stop.sh); when
# that is impossible named falls back to 127.0.0.1.
# Generates the TSIG keys (tsig-keygen), writes named.conf and the zone from
# the templates beside this script, starts Debian's named in the foreground
# (-g, as root when run as root) in its own session, waits until it answers
# an SOA query, writes DIR/env (DNS_* keys, mode 0600) and prints named's PID.
# Stop it with tests/lab/bind/stop.sh DIR (or kill the printed PID).
set -eu
dir=${1:?usage: start.sh DIR NET}
net=${2:?usage: start.sh DIR NET}
here=$(cd "$(dirname "$0")" && pwd)
zone=${DNS_LAB_ZONE:-lab.test}
key=tlr-key
addr="$net.53.53"

case "$net" in 127.[0-9]*) ;; *) echo "bind: NET must look like 127.N, got '$net'" >&2; exit 2 ;; esac
for tool in named tsig-keygen dig; do
  command -v "$tool" >/dev/null || { echo "bind: $tool not found (apt-get install bind9 bind9-dnsutils)" >&2; exit 1; }
done
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
umask 077

# Keys: the main one (DNS_KEY_*), one per other algorithm, and a key that may
# transfer the zone but not update it (for the "refused with a valid key" case).
: > "$dir/keys.conf"
gen() { tsig-keygen -a "$1" "$2" > "$dir/$2.key" && cat "$dir/$2.key" >> "$dir/keys.conf"; }
secret_of() { sed -n 's/.*secret "\(.*\)";.*/\1/p' "$dir/$1.key"; }
gen hmac-sha256 "$key"
gen hmac-md5 tlr-md5
gen hmac-sha1 tlr-sha1
gen hmac-sha512 tlr-sha512
gen hmac-sha256 tlr-ro

port_free() {
  ! ss -Hlnu "( sport = :$1 )" 2>/dev/null | grep -q . && ! ss -Hlnt "( sport = :$1 )" 2>/dev/null | grep -q .
}

rm -f "$dir/alias"
if ! ip -4 addr show dev lo 2>/dev/null | grep -q "inet $addr/"; then
  if [ "$(id -u)" = 0 ] && ip addr add "$addr/32" dev lo 2>/dev/null; then
    echo "$addr/32" > "$dir/alias"
  else
    echo "bind: cannot add $addr to lo; using 127.0.0.1" >&2
    addr=127.0.0.1
  fi
fi

user=()
[ "$(id -u)" = 0 ] && user=(-u root)
for attempt in 1 2 3 4 5; do
  port=$((20000 + (RANDOM * 32768 + RANDOM) % 40000))
  port_free "$port" || continue
  subst="s|@DIR@|$dir|g; s|@PORT@|$port|g; s|@ADDR@|$addr|g; s|@ZONE@|$zone|g; s|@KEY@|$key|g"
  sed "$subst" "$here/named.conf.in" > "$dir/named.conf"
  sed "$subst" "$here/zone.in" > "$dir/$zone.zone"
  rm -f "$dir/$zone.zone.jnl" "$dir/named.pid"
  setsid named -c "$dir/named.conf" -g "${user[@]}" > "$dir/named.log" 2>&1 < /dev/null &
  pid=$!
  up=0
  for _ in $(seq 150); do
    if ! kill -0 "$pid" 2>/dev/null; then break; fi
    if grep -q "^.* running$" "$dir/named.log"; then
      dig +time=2 +tries=2 +short -p "$port" "@$addr" "$zone" SOA 2>/dev/null | grep -q "ns.$zone" && up=1
      break
    fi
    sleep 0.1
  done
  if [ "$up" = 1 ]; then
    tmp="$dir/env.tmp"
    {
      echo "DNS_SERVER='$addr'"
      echo "DNS_PORT='$port'"
      echo "DNS_ZONE='$zone'"
      echo "DNS_KEY_NAME='$key'"
      echo "DNS_KEY_ALGORITHM='hmac-sha256'"
      echo "DNS_KEY_SECRET='$(secret_of "$key")'"
      echo "DNS_KEY_FILE='$dir/$key.key'"
      echo "DNS_KEYS='hmac-md5:tlr-md5:$(secret_of tlr-md5) hmac-sha1:tlr-sha1:$(secret_of tlr-sha1) hmac-sha512:tlr-sha512:$(secret_of tlr-sha512)'"
      echo "DNS_KEY_READONLY='hmac-sha256:tlr-ro:$(secret_of tlr-ro)'"
      echo "DNS_PID='$pid'"
      echo "DNS_DIR='$dir'"
    } > "$tmp"
    sync "$tmp" 2>/dev/null || true
    mv "$tmp" "$dir/env"
    echo "$pid"
    exit 0
  fi
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
done
echo "bind: named did not come up; its log:" >&2
tail -n 30 "$dir/named.log" >&2
exit 1
