#!/usr/bin/env bash
# scripts/rgw-up.sh DATA_DIR
#
# Start a throw-away, single-node Ceph cluster (1 mon, 1 OSD, no mgr) plus a
# RADOS Gateway (S3 API, "beast" frontend) on 127.0.0.1, from Debian 12's
# ceph 16.2.x packages. It is the local/CI stand-in for AWS S3 used by the
# test suite (test/setup/global-setup.ts runs it with DATA_DIR=.maas-test/rgw).
# No systemd, no cephadm, no docker: plain foreground daemons whose PIDs are
# recorded under DATA_DIR/pids, so scripts/rgw-down.sh can stop exactly them.
#
# Idempotent: if the cluster recorded in DATA_DIR is up, answering, and was
# started with the same endpoint/credentials, it is reused and only the
# connection info is printed. Otherwise whatever this script started there
# before is stopped, DATA_DIR/cluster is wiped and a fresh cluster is built.
#
# Shared use by concurrent test runs (several vitest processes in one
# checkout): a caller that sets RGW_LEASE_PID=<its pid> registers a lease in
# DATA_DIR/leases and releases it with `rgw-down.sh DATA_DIR --release <pid>`;
# the last lease holder out stops the cluster, but only if a leased call
# started it (DATA_DIR/managed), never one a developer started by hand.
# A running cluster that other live lease holders use is never restarted.
# All of this happens under an flock on DATA_DIR/.lock.
#
# Output (stdout, and DATA_DIR/s3.env), shell/dotenv syntax:
#   S3_ENDPOINT=http://127.0.0.1:7480
#   S3_ACCESS_KEY=...
#   S3_SECRET_KEY=...
#   S3_REGION=us-east-1
# Progress and errors go to stderr.
#
# Environment knobs (all optional):
#   RGW_PORT=7480               S3 port on 127.0.0.1 (the Ceph/RGW default).
#                               RGW_PORT=auto: the running instance's port if
#                               DATA_DIR has one, else 7480 if free, else a free
#                               port in 20000-29999 (so tests don't collide with a
#                               developer's own RGW on 7480).
#   RGW_LEASE_PID=<pid>         register a lease for that process (see above)
#   CEPH_MON_PORT=RGW_PORT+1    monitor msgr v2 port; CEPH_MON_PORT_V1=RGW_PORT+2
#                               (not Ceph's 3300/6789: a developer may run a real
#                               Ceph on this host; one knob moves the whole set)
#   CEPH_OSD_STORE=memstore     or bluestore (memstore: data in RAM, fastest)
#   CEPH_MEMSTORE_BYTES=6442450944   memstore capacity (6 GiB: the suite holds large-model tests)
#   CEPH_BLUESTORE_BYTES=10737418240 sparse block file size for bluestore
#   S3_ACCESS_KEY / S3_SECRET_KEY    credentials of the S3 user (defaults below)
#   CEPH_NO_INSTALL=1           never run apt-get
#   CEPH_START_TIMEOUT=180      seconds to wait for radosgw to answer
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
DATA_DIR=${1:?usage: $0 DATA_DIR}
mkdir -p "$DATA_DIR"
DATA_DIR=$(cd "$DATA_DIR" && pwd -P)
C="$DATA_DIR/cluster"           # everything Ceph writes (config, stores, logs, sockets)
PIDS="$DATA_DIR/pids"           # one file per daemon we started: mon.pid osd.pid rgw.pid
CONF="$C/ceph.conf"

RGW_PORT=${RGW_PORT:-7480}
STORE=${CEPH_OSD_STORE:-memstore}
MEMSTORE_BYTES=${CEPH_MEMSTORE_BYTES:-6442450944}
BLUESTORE_BYTES=${CEPH_BLUESTORE_BYTES:-10737418240}
ACCESS_KEY=${S3_ACCESS_KEY:-maas-test-access-key}
SECRET_KEY=${S3_SECRET_KEY:-maas-test-secret-key-0123456789abcdef}
TIMEOUT=${CEPH_START_TIMEOUT:-180}

log() { printf '[rgw-up %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
fail() {  # error before anything was started: just drop our lease
  log "ERROR: $*"
  [ -n "${RGW_LEASE_PID:-}" ] && rm -f "$DATA_DIR/leases/$RGW_LEASE_PID"
  exit 1
}
die() {  # only used once we are (re)building the cluster: nobody else is using it
  log "ERROR: $*"
  for f in "$C"/log/*.log "$C"/log/*.stdout; do
    [ -s "$f" ] && { echo "--- tail $f" >&2; tail -n 15 "$f" >&2; }
  done
  "$HERE/rgw-down.sh" "$DATA_DIR" >&2 || true   # stop whatever we started
  [ -n "${RGW_LEASE_PID:-}" ] && rm -f "$DATA_DIR/leases/$RGW_LEASE_PID"
  exit 1
}

# Serialise concurrent up/down calls on the same DATA_DIR (e.g. two test runs
# started at once). rgw-down.sh skips locking when called from here.
if [ "${RGW_LOCK_HELD:-0}" != 1 ]; then exec 9>"$DATA_DIR/.lock"; flock 9; fi
export RGW_LOCK_HELD=1
# Leases: DATA_DIR/leases/<pid> holds that process's start time (field 22 of
# /proc/<pid>/stat), so a recycled PID is not mistaken for a live holder.
# (Same helpers in rgw-down.sh.)
proc_start() { local s; s=$(cat "/proc/$1/stat" 2>/dev/null) || return 1; s=${s##*) }; set -- $s; echo "${20}"; }
lease_add() { local t; t=$(proc_start "$2") || return 1; mkdir -p "$1/leases"; echo "$t" > "$1/leases/$2"; }
lease_others() {  # DATA_DIR OWN_PID: prints live holders other than OWN_PID, drops dead leases
  local f pid
  for f in "$1"/leases/*; do
    [ -f "$f" ] || continue; pid=${f##*/}
    if [ "$(proc_start "$pid" || true)" != "$(cat "$f")" ]; then rm -f "$f"; continue; fi
    [ "$pid" = "$2" ] || printf '%s ' "$pid"
  done
}

write_env() {  # atomically, so a concurrent reader never sees half a file
  printf '%s\n' "$S3_ENV" > "$DATA_DIR/s3.env.tmp"
  mv -f "$DATA_DIR/s3.env.tmp" "$DATA_DIR/s3.env"
  printf '%s\n' "$S3_ENV"
}

# HTTP probe without curl (not installed on a bare Debian): status line of GET /.
http_status() {
  timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1 && printf 'GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3 && head -n1 <&3" 2>/dev/null | tr -d '\r' || true
}
port_busy() { timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; }
pid_alive() { [ -f "$PIDS/$1.pid" ] && kill -0 "$(cat "$PIDS/$1.pid")" 2>/dev/null; }

# ---------- lease ----------
if [ -n "${RGW_LEASE_PID:-}" ]; then
  lease_add "$DATA_DIR" "$RGW_LEASE_PID" || fail "RGW_LEASE_PID=$RGW_LEASE_PID is not a running process"
fi

# ---------- what is running here now? ----------
RUNNING_PORT=
if pid_alive mon && pid_alive osd && pid_alive rgw; then
  RUNNING_PORT=$(sed -n 's|^S3_ENDPOINT=http://127.0.0.1:\([0-9]*\)$|\1|p' "$DATA_DIR/s3.env" 2>/dev/null || true)
  [[ "$(http_status "$RUNNING_PORT")" == HTTP/1.1\ * ]] || RUNNING_PORT=
fi

if [ "$RGW_PORT" = auto ]; then
  pick() { ! port_busy "$1" && ! port_busy $(($1 + 1)) && ! port_busy $(($1 + 2)); }
  if [ -n "$RUNNING_PORT" ]; then RGW_PORT=$RUNNING_PORT
  elif pick 7480; then RGW_PORT=7480
  else
    RGW_PORT=
    for _ in $(seq 1 30); do p=$((20000 + RANDOM % 10000)); pick "$p" && { RGW_PORT=$p; break; }; done
    [ -n "$RGW_PORT" ] || fail "no free port found; set RGW_PORT"
    log "port 7480 (or 7481/7482) is taken; using $RGW_PORT"
  fi
fi
[[ "$RGW_PORT" =~ ^[0-9]+$ ]] || fail "RGW_PORT must be a port number or 'auto'"
MON_PORT=${CEPH_MON_PORT:-$((RGW_PORT + 1))}
MON_PORT_V1=${CEPH_MON_PORT_V1:-$((RGW_PORT + 2))}
ENDPOINT="http://127.0.0.1:$RGW_PORT"
# Everything a client needs. Also the identity of a running instance: a
# running cluster is reused only if it was started with exactly these values.
S3_ENV="S3_ENDPOINT=$ENDPOINT
S3_ACCESS_KEY=$ACCESS_KEY
S3_SECRET_KEY=$SECRET_KEY
S3_REGION=us-east-1"

# ---------- already up with the same settings? ----------
if [ -n "$RUNNING_PORT" ]; then
  if [ "$(cat "$DATA_DIR/s3.env" 2>/dev/null)" = "$S3_ENV" ]; then
    log "already running (pids: mon=$(cat "$PIDS/mon.pid") osd=$(cat "$PIDS/osd.pid") rgw=$(cat "$PIDS/rgw.pid"))"
    write_env; exit 0
  fi
  others=$(lease_others "$DATA_DIR" "${RGW_LEASE_PID:-}")
  if [ -n "$others" ]; then
    fail "the cluster in $DATA_DIR runs with other settings (port $RUNNING_PORT or credentials) and is in use by process(es) $others; not restarting it"
  fi
  log "running cluster has other settings (port $RUNNING_PORT or credentials); rebuilding"
fi

# ---------- packages (a fresh CI machine has none of them) ----------
NEEDED=(ceph-mon ceph-osd radosgw ceph radosgw-admin ceph-authtool monmaptool)
missing=0
for cmd in "${NEEDED[@]}"; do command -v "$cmd" >/dev/null || missing=1; done
if [ "$missing" = 1 ]; then
  [ "${CEPH_NO_INSTALL:-0}" != 1 ] || fail "ceph commands missing and CEPH_NO_INSTALL=1"
  [ "$(id -u)" = 0 ] || fail "ceph packages missing; run as root or: sudo apt-get install --no-install-recommends ceph-mon ceph-osd radosgw"
  log "installing ceph-mon ceph-osd radosgw from Debian (apt-get update first)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2 || fail "apt-get update failed"
  # ceph-common (ceph, radosgw-admin, ceph-authtool, monmaptool) comes as a dependency.
  apt-get install -y -qq --no-install-recommends ceph-mon ceph-osd radosgw >/dev/null \
    || fail "apt-get install failed"
  for cmd in "${NEEDED[@]}"; do command -v "$cmd" >/dev/null || fail "$cmd still missing after apt-get install"; done
fi

# ---------- clean previous state (only what this script started) ----------
"$HERE/rgw-down.sh" "$DATA_DIR" >/dev/null 2>&1 || true
for p in "$RGW_PORT" "$MON_PORT" "$MON_PORT_V1"; do
  # Not die(): nothing of ours is running, there is nothing to stop.
  if port_busy "$p"; then fail "port $p on 127.0.0.1 is already in use by another process (set RGW_PORT, or RGW_PORT=auto)"; fi
done
rm -rf "$C" "$PIDS" "$DATA_DIR/s3.env" "$DATA_DIR/managed"
mkdir -p "$C"/{mon/ceph-a,osd/ceph-0,rgw,log,run} "$PIDS"
# Started on behalf of a lease holder: the last one to release it stops it.
if [ -n "${RGW_LEASE_PID:-}" ]; then echo "$RGW_LEASE_PID" > "$DATA_DIR/managed"; fi
T0=$(date +%s%N)

FSID=$(cat /proc/sys/kernel/random/uuid)
OSD_UUID=$(cat /proc/sys/kernel/random/uuid)

# Single node, single replica, no authentication between daemons (loopback
# only); small PG counts so pool creation by radosgw is quick.
cat > "$CONF" <<CONF
[global]
fsid = $FSID
mon host = [v2:127.0.0.1:$MON_PORT,v1:127.0.0.1:$MON_PORT_V1]
mon initial members = a
public addr = 127.0.0.1
cluster addr = 127.0.0.1
ms bind ipv4 = true
ms bind ipv6 = false
auth cluster required = none
auth service required = none
auth client required = none
# radosgw defaults to ms_mon_client_mode=secure + cephx; with auth none only crc works
ms mon client mode = crc
keyring = $C/keyring
run dir = $C/run
admin socket = $C/run/\$name.asok
log file = $C/log/\$name.log
pid file = $C/run/\$name.pid
log to stderr = false
err to stderr = true
mon cluster log file = $C/log/cluster.log
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
mon max pg per osd = 1000
mon warn on pool no redundancy = false
# CI disks are often nearly full; don't let the mon refuse to work
mon data avail warn = 2
mon data avail crit = 1
osd objectstore = $STORE

[mon]
mon data = $C/mon/ceph-\$id

[osd]
osd data = $C/osd/ceph-\$id
memstore device bytes = $MEMSTORE_BYTES
bluestore block path = $C/osd/block.\$id
bluestore block create = true
bluestore block size = $BLUESTORE_BYTES
bluestore fsck on mkfs = false
bluestore fsck on mount = false
osd memory target = 1073741824
# defaults assume ext4-sized xattrs; S3 keys can be long
osd max object name len = 460
osd max object namespace len = 64

[client.rgw.a]
# tcp_nodelay: without it a response whose body goes out after its headers waits for the
# client's delayed ACK (Nagle), ~40 ms per small GET on loopback; S3 has no such stall.
rgw frontends = beast endpoint=127.0.0.1:$RGW_PORT tcp_nodelay=1
rgw data = $C/rgw
# path-style addressing only (clients must use forcePathStyle)
rgw dns name = 127.0.0.1
rgw thread pool size = 128
rgw enable usage log = false
rgw dynamic resharding = false
CONF

# Daemons: -f keeps them in the foreground so $! is the daemon's own PID;
# setsid gives them their own session (a Ctrl-C on the test run doesn't hit
# them mid-request; rgw-down.sh stops them); 9>&- so they don't hold our lock.
start_daemon() {  # name stdout-log command...
  local name=$1 out=$2; shift 2
  setsid "$@" </dev/null >>"$C/log/$out" 2>&1 9>&- &
  echo $! > "$PIDS/$name.pid"
}

log "creating monitor on ports $MON_PORT/$MON_PORT_V1 (fsid $FSID)"
ceph-authtool --create-keyring "$C/keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
ceph-authtool "$C/keyring" --gen-key -n client.admin --cap mon 'allow *' --cap osd 'allow *' --cap mgr 'allow *' >/dev/null
monmaptool --create --fsid "$FSID" --addv a "[v2:127.0.0.1:$MON_PORT,v1:127.0.0.1:$MON_PORT_V1]" "$C/monmap" >/dev/null
ceph-mon -c "$CONF" --mkfs -i a --monmap "$C/monmap" --keyring "$C/keyring" 2>>"$C/log/setup.log" || die "ceph-mon --mkfs failed"
start_daemon mon mon.a.stdout ceph-mon -c "$CONF" -f -i a

CEPH=(ceph -c "$CONF" --connect-timeout 10)
for _ in $(seq 1 60); do "${CEPH[@]}" mon stat >/dev/null 2>&1 && break; pid_alive mon || die "ceph-mon exited"; sleep 0.5; done
"${CEPH[@]}" mon stat >/dev/null 2>&1 || die "monitor not answering"
log "monitor up"

log "creating osd.0 ($STORE)"
OSD_ID=$("${CEPH[@]}" osd new "$OSD_UUID")
[ "$OSD_ID" = 0 ] || die "unexpected osd id $OSD_ID"
ceph-osd -c "$CONF" -i 0 --mkfs --osd-uuid "$OSD_UUID" >>"$C/log/setup.log" 2>&1 || die "ceph-osd --mkfs failed"
start_daemon osd osd.0.stdout ceph-osd -c "$CONF" -f -i 0
for _ in $(seq 1 120); do
  "${CEPH[@]}" osd dump 2>/dev/null | grep -q '^osd.0 up' && break
  pid_alive osd || die "ceph-osd exited"; sleep 0.5
done
"${CEPH[@]}" osd dump 2>/dev/null | grep -q '^osd.0 up' || die "osd.0 did not come up"
log "osd.0 up"

log "starting radosgw on $ENDPOINT"
start_daemon rgw rgw.a.stdout radosgw -c "$CONF" -f -n client.rgw.a
deadline=$(( $(date +%s) + TIMEOUT ))
until [[ "$(http_status "$RGW_PORT")" == HTTP/1.1\ * ]]; do
  pid_alive rgw || die "radosgw exited"
  [ "$(date +%s)" -lt "$deadline" ] || die "radosgw did not answer within ${TIMEOUT}s"
  sleep 0.5
done
log "radosgw answering"

radosgw-admin -c "$CONF" -n client.admin user create --uid=maas-test --display-name="maas test user" \
  --access-key="$ACCESS_KEY" --secret-key="$SECRET_KEY" >"$C/user.json" 2>>"$C/log/setup.log" \
  || die "radosgw-admin user create failed"

log "ready in $(( ($(date +%s%N) - T0) / 1000000 )) ms (pids: mon=$(cat "$PIDS/mon.pid") osd=$(cat "$PIDS/osd.pid") rgw=$(cat "$PIDS/rgw.pid"))"
write_env
