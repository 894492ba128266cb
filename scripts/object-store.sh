#!/usr/bin/env bash
# The object store the S3 tests run against: OpenStack Swift (Debian
# packages) on loopback, speaking S3 through its s3api middleware, with
# tempauth. A real object store, not a mock.
#
#   scripts/object-store.sh install | start | stop | status | env
#
#   endpoint     http://127.0.0.1:$SNAPFAULT_S3_PORT (default 8480), region us-east-1, path-style
#   credentials  access key "test:tester", secret "testing"
#   data         $SNAPFAULT_OBJECT_STORE_DIR (default ${TMPDIR:-/tmp}/snapfault-object-store)
#
# Ports are the reference recipe's plus offsets (proxy 8480, object,
# container, account servers 6210-6212, memcached 11221), so this runs beside
# a Swift started from that recipe on its default ports. Must run as root
# (apt-get, and Swift reads /etc/swift/swift.conf from that path only).
# `start` is idempotent: it returns at once when the store already answers.
set -euo pipefail

BASE=${SNAPFAULT_OBJECT_STORE_DIR:-${TMPDIR:-/tmp}/snapfault-object-store}
PORT=${SNAPFAULT_S3_PORT:-8480}
OBJ_PORT=6210; CONT_PORT=6211; ACCT_PORT=6212; MC_PORT=11221
ETC=$BASE/etc; DEV=$BASE/srv; RUN=$BASE/run; LOG=$BASE/log
SERVERS="object container account proxy"
PACKAGES="swift swift-proxy swift-account swift-container swift-object memcached curl"

installed() {
  command -v swift-proxy-server >/dev/null && command -v memcached >/dev/null && command -v swift-ring-builder >/dev/null && command -v curl >/dev/null
}

install_pkgs() {
  if installed; then echo "object store: Swift is installed"; return 0; fi
  [ "$(id -u)" = 0 ] || { echo "object store: installing Swift needs root (apt-get)" >&2; exit 1; }
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  # The packages' postinst scripts register systemd units but start nothing here.
  apt-get install -y -q --no-install-recommends $PACKAGES
  installed || { echo "object store: apt-get finished but swift-proxy-server is still missing" >&2; exit 1; }
}

write_configs() {
  mkdir -p "$ETC" "$DEV/d1" "$RUN" "$LOG" /etc/swift
  # Swift reads the hash prefix/suffix from this exact path. Written only when
  # absent: another Swift on this host may be running with the one there.
  [ -f /etc/swift/swift.conf ] || cat > /etc/swift/swift.conf <<'CONF'
[swift-hash]
swift_hash_path_suffix = s3test
swift_hash_path_prefix = s3test

[storage-policy:0]
name = Policy-0
default = yes
CONF
  local s p
  for s in object:$OBJ_PORT container:$CONT_PORT account:$ACCT_PORT; do
    p=${s#*:}; s=${s%:*}
    # One process each (workers = 0), no mount check, running as root.
    cat > "$ETC/$s-server.conf" <<CONF
[DEFAULT]
bind_ip = 127.0.0.1
bind_port = $p
workers = 0
user = root
devices = $DEV
mount_check = false
swift_dir = $ETC
log_level = WARNING

[pipeline:main]
pipeline = $s-server

[app:$s-server]
use = egg:swift#$s
CONF
  done
  cat > "$ETC/proxy-server.conf" <<CONF
[DEFAULT]
bind_ip = 127.0.0.1
bind_port = $PORT
workers = 0
user = root
swift_dir = $ETC
log_level = WARNING

[pipeline:main]
pipeline = catch_errors gatekeeper healthcheck proxy-logging cache listing_formats s3api tempauth copy slo dlo proxy-logging proxy-server

[app:proxy-server]
use = egg:swift#proxy
account_autocreate = true

[filter:catch_errors]
use = egg:swift#catch_errors

[filter:gatekeeper]
use = egg:swift#gatekeeper

[filter:healthcheck]
use = egg:swift#healthcheck

[filter:proxy-logging]
use = egg:swift#proxy_logging

[filter:cache]
use = egg:swift#memcache
memcache_servers = 127.0.0.1:$MC_PORT

[filter:listing_formats]
use = egg:swift#listing_formats

[filter:s3api]
use = egg:swift#s3api
location = us-east-1

[filter:tempauth]
use = egg:swift#tempauth
user_test_tester = testing .admin

[filter:copy]
use = egg:swift#copy

[filter:slo]
use = egg:swift#slo

[filter:dlo]
use = egg:swift#dlo
CONF
  # Single-replica rings, one device each.
  ( cd "$ETC"
    rm -f ./*.builder ./*.ring.gz
    for s in object:$OBJ_PORT container:$CONT_PORT account:$ACCT_PORT; do
      p=${s#*:}; s=${s%:*}
      swift-ring-builder $s.builder create 10 1 1 >/dev/null
      swift-ring-builder $s.builder add r1z1-127.0.0.1:$p/d1 100 >/dev/null
      swift-ring-builder $s.builder rebalance >/dev/null
    done )
}

# A real authenticated request through proxy -> account server succeeds.
ready() {
  local p tok
  for p in $OBJ_PORT $CONT_PORT $ACCT_PORT $PORT; do (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null || return 1; done
  tok=$(curl -sf -m 5 -D - -o /dev/null -H 'X-Auth-User: test:tester' -H 'X-Auth-Key: testing' \
        "http://127.0.0.1:$PORT/auth/v1.0" | tr -d '\r' | sed -n 's/^X-Auth-Token: //Ip') || return 1
  [ -n "$tok" ] && curl -sf -m 5 -I -o /dev/null -H "X-Auth-Token: $tok" "http://127.0.0.1:$PORT/v1/AUTH_test"
}

alive() { [ -f "$RUN/$1.pid" ] && kill -0 "$(cat "$RUN/$1.pid")" 2>/dev/null; }

start() {
  installed || { echo "object store: Swift is not installed: run scripts/object-store.sh install" >&2; exit 1; }
  if ready; then echo "object store: already running at http://127.0.0.1:$PORT"; return 0; fi
  [ -f "$ETC/proxy-server.conf" ] && [ -f "$ETC/object.ring.gz" ] || write_configs
  mkdir -p "$RUN" "$LOG"
  if ! alive memcached; then
    memcached -u root -l 127.0.0.1 -p $MC_PORT -m 64 >"$LOG/memcached.log" 2>&1 &
    echo $! > "$RUN/memcached.pid"
  fi
  local s
  for s in $SERVERS; do
    alive "$s" && continue
    # -v: log to stderr (there is no syslog daemon here)
    swift-$s-server "$ETC/$s-server.conf" -v >"$LOG/$s.log" 2>&1 &
    echo $! > "$RUN/$s.pid"
  done
  local i
  for i in $(seq 1 600); do
    if ready; then echo "object store: ready at http://127.0.0.1:$PORT after $i polls"; return 0; fi
    sleep 0.1
  done
  echo "object store: Swift did not answer within 60 s; its logs:" >&2
  tail -n 20 "$LOG"/*.log >&2 || true
  exit 1
}

stop() {
  local s f pids=""
  for s in proxy account container object memcached; do
    f=$RUN/$s.pid
    [ -f "$f" ] || continue
    pids="$pids $(cat "$f")"
    rm -f "$f"
  done
  [ -n "$pids" ] || { echo "object store: not running"; return 0; }
  # SIGTERM makes a Swift server kill its own process group (each calls setsid()).
  kill $pids 2>/dev/null || true
  for _ in $(seq 1 50); do kill -0 $pids 2>/dev/null || { echo "object store: stopped"; return 0; }; sleep 0.1; done
  kill -9 $pids 2>/dev/null || true
  echo "object store: stopped (killed)"
}

status() {
  local s any=0
  for s in memcached $SERVERS; do
    if alive "$s"; then any=1; ps -o pid=,rss=,args= -p "$(cat "$RUN/$s.pid")"; fi
  done
  if ready; then echo "object store: ready at http://127.0.0.1:$PORT"; return 0; fi
  [ $any = 1 ] && echo "object store: processes up but not answering" || echo "object store: not running"
  return 3
}

case "${1:-}" in
  install) install_pkgs ;;
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 install|start|stop|status" >&2; exit 2 ;;
esac
