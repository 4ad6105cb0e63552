#!/usr/bin/env bash
# scripts/rgw-down.sh DATA_DIR [--purge | --release PID]
#
# Stop exactly the daemons that scripts/rgw-up.sh DATA_DIR started (PIDs
# recorded in DATA_DIR/pids/*.pid), newest first (rgw, osd, mon), each only if
# that PID still runs the expected program (a stale pid file after a reboot
# must not kill an unrelated process). Never matches processes by name, so a
# developer's own Ceph/RGW on this host is left alone.
#
# --purge        also delete everything rgw-up.sh created in DATA_DIR (cluster
#                data, logs, s3.env, leases); only the empty lock file stays.
# --release PID  drop the lease that `RGW_LEASE_PID=PID rgw-up.sh` registered
#                (used by test/setup/global-setup.ts). Stops and purges only if
#                no other live process holds a lease AND the cluster was started
#                for a lease holder (DATA_DIR/managed); a cluster a developer
#                started by hand keeps running.
# Always exits 0 unless the arguments are wrong.
set -uo pipefail
usage() { echo "usage: $0 DATA_DIR [--purge | --release PID]" >&2; exit 2; }
DATA_DIR=${1:-}; [ -n "$DATA_DIR" ] || usage
PURGE=0 RELEASE=
case "${2:-}" in
  "") ;;
  --purge) PURGE=1 ;;
  --release) RELEASE=${3:-}; [[ "$RELEASE" =~ ^[0-9]+$ ]] || usage ;;
  *) usage ;;
esac
[ -d "$DATA_DIR" ] || exit 0
DATA_DIR=$(cd "$DATA_DIR" && pwd -P)
PIDS="$DATA_DIR/pids"

# Same lock as rgw-up.sh, unless rgw-up.sh itself called us while holding it.
if [ "${RGW_LOCK_HELD:-0}" != 1 ]; then exec 9>"$DATA_DIR/.lock"; flock 9; fi

# Lease helpers, as in rgw-up.sh: a lease file holds the holder's start time.
proc_start() { local s; s=$(cat "/proc/$1/stat" 2>/dev/null) || return 1; s=${s##*) }; set -- $s; echo "${20}"; }
lease_others() {  # DATA_DIR OWN_PID: prints live holders other than OWN_PID, drops dead leases
  local f pid
  for f in "$1"/leases/*; do
    [ -f "$f" ] || continue; pid=${f##*/}
    if [ "$(proc_start "$pid" || true)" != "$(cat "$f")" ]; then rm -f "$f"; continue; fi
    [ "$pid" = "$2" ] || printf '%s ' "$pid"
  done
}

if [ -n "$RELEASE" ]; then
  rm -f "$DATA_DIR/leases/$RELEASE"
  others=$(lease_others "$DATA_DIR" "$RELEASE")
  if [ -n "$others" ]; then echo "still in use by $others- left running"; exit 0; fi
  if [ ! -f "$DATA_DIR/managed" ]; then echo "not started by a lease holder - left running"; exit 0; fi
  PURGE=1
fi

stop_one() { # name expected-exe
  local f="$PIDS/$1.pid" pid exe
  [ -f "$f" ] || return 0
  pid=$(cat "$f")
  exe=$(basename "$(readlink "/proc/$pid/exe" 2>/dev/null)" 2>/dev/null || true)
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && [ "$exe" = "$2" ]; then
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    if kill -0 "$pid" 2>/dev/null; then
      kill -KILL "$pid" 2>/dev/null
      for _ in $(seq 1 25); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
      echo "killed -9 $1 ($pid)"
    else
      echo "stopped $1 ($pid)"
    fi
  fi
  rm -f "$f"
}
stop_one rgw radosgw
stop_one osd ceph-osd
stop_one mon ceph-mon

if [ "$PURGE" = 1 ]; then
  rm -rf "$DATA_DIR/cluster" "$DATA_DIR/pids" "$DATA_DIR/leases" "$DATA_DIR/managed" \
         "$DATA_DIR/s3.env" "$DATA_DIR/s3.env.tmp"
  # .lock stays: a concurrent rgw-up.sh may be waiting on it; deleting it would
  # let a third caller lock a new file and run alongside.
  echo "purged $DATA_DIR"
fi
exit 0
