#!/usr/bin/env bash
# tests/pg.sh: a throwaway PostgreSQL cluster for the tests: initdb and pg_ctl
# (Debian's /usr/lib/postgresql/N/bin) in a fresh /tmp/ocrpool-pg.XXXXXX, on a
# Unix socket only, never a system service.
#
#   bash tests/pg.sh start STATE_DIR    start one, record it in STATE_DIR
#   bash tests/pg.sh stop STATE_DIR     stop it and remove its directory
#
# STATE_DIR/url is a libpq URL to the database "postgres" as the superuser
# "postgres"; STATE_DIR/datadir is the cluster's data directory (its parent
# holds the socket and the server log). Sourced, it defines the same as
# functions for tests that need a cluster of their own (to restart it under
# load): pg_cluster_start DIR, pg_cluster_stop DIR, pg_cluster_down DIR,
# pg_cluster_up DIR, pg_cluster_restart DIR, pg_cluster_url DIR.
# Every function returns non-zero, saying why on stderr, when it fails.

# pg__bin: the newest installed server's bin directory.
pg__bin() {
  local d
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  if [ -z "$d" ] || [ ! -x "$d/pg_ctl" ]; then
    echo "pg.sh: no PostgreSQL server installed (no /usr/lib/postgresql/*/bin/pg_ctl)" >&2
    return 1
  fi
  echo "$d"
}

# pg__as_owner CMD...: PostgreSQL refuses to run as root, so as root it runs as
# the "postgres" system user (from /, which that user can read).
pg__as_owner() {
  if [ "$(id -u)" -eq 0 ]; then
    (cd / && runuser -u postgres -- "$@")
  else
    "$@"
  fi
}

# pg__datadir DIR: the data directory recorded in DIR, if any.
pg__datadir() { [ -s "$1/datadir" ] && cat "$1/datadir"; }

# pg__ctl DIR ARGS...: pg_ctl on the cluster recorded in DIR.
pg__ctl() {
  local state=$1 bin data
  shift
  bin=$(pg__bin) || return 1
  data=$(pg__datadir "$state") || { echo "pg.sh: no cluster recorded in $state" >&2; return 1; }
  pg__as_owner "$bin/pg_ctl" -D "$data" "$@"
}

# pg__log DIR: prints the recorded cluster's server log (after a failure).
pg__log() {
  local data
  data=$(pg__datadir "$1") || return 0
  echo "---- PostgreSQL's log ($(dirname "$data")/log) ----" >&2
  cat "$(dirname "$data")/log" >&2 2>/dev/null
}

# pg_cluster_url DIR: prints the URL of the cluster recorded in DIR.
pg_cluster_url() { cat "$1/url"; }

# pg_cluster_start DIR: a new cluster, recorded in DIR (created if need be).
# One recorded there before is stopped and removed first.
pg_cluster_start() {
  local state=$1 bin root data
  bin=$(pg__bin) || return 1
  mkdir -p "$state" || return 1
  pg_cluster_stop "$state" || return 1
  if [ "$(id -u)" -eq 0 ] && ! id postgres >/dev/null 2>&1; then
    echo "pg.sh: running as root, and there is no \"postgres\" user to run PostgreSQL as" >&2
    return 1
  fi
  root=$(mktemp -d /tmp/ocrpool-pg.XXXXXX) || return 1
  data=$root/data
  # Clients connect through the socket in $root: others may enter it.
  chmod 755 "$root"
  [ "$(id -u)" -ne 0 ] || chown postgres: "$root"
  echo "$data" >"$state/datadir"
  if ! pg__as_owner "$bin/initdb" -D "$data" -A trust -U postgres -E UTF8 --no-sync >"$root/initdb.log" 2>&1; then
    echo "pg.sh: initdb failed:" >&2
    cat "$root/initdb.log" >&2
    pg_cluster_stop "$state"
    return 1
  fi
  # Throwaway data: no fsync. But a commit is written to the OS before it is
  # acknowledged (synchronous_commit), so a crash of PostgreSQL (pg_ctl stop -m
  # immediate, as test_pg_restart does) loses no acknowledged transaction, as on
  # a real server. Enough connections for ~20 test servers at once, each with a
  # few, plus the tests' psql.
  cat >>"$data/postgresql.conf" <<EOF
listen_addresses = ''
unix_socket_directories = '$root'
max_connections = 300
fsync = off
synchronous_commit = on
full_page_writes = off
EOF
  if ! pg_cluster_up "$state"; then
    pg_cluster_stop "$state"
    return 1
  fi
  echo "postgresql:///postgres?host=$root&user=postgres" >"$state/url"
}

# pg_cluster_up DIR: starts the recorded cluster, waiting until it accepts
# connections; on failure prints the server's log.
pg_cluster_up() {
  local data
  data=$(pg__datadir "$1") || { echo "pg.sh: no cluster recorded in $1" >&2; return 1; }
  if ! pg__ctl "$1" -w -t 60 -l "$(dirname "$data")/log" start >/dev/null; then
    echo "pg.sh: PostgreSQL did not start (data directory $data)" >&2
    pg__log "$1"
    return 1
  fi
}

# pg_cluster_down DIR [MODE]: stops the recorded cluster, keeping its data
# (MODE: pg_ctl's -m, immediate by default: what a crash leaves).
pg_cluster_down() {
  if ! pg__ctl "$1" -w -m "${2:-immediate}" stop >/dev/null; then
    echo "pg.sh: PostgreSQL did not stop" >&2
    pg__log "$1"
    return 1
  fi
}

# pg_cluster_restart DIR [MODE]: down, then up again on the same data.
pg_cluster_restart() { pg_cluster_down "$@" && pg_cluster_up "$1"; }

# pg_cluster_stop DIR: stops the recorded cluster, if it runs, and removes its
# directory and its record. Nothing recorded: nothing to do.
pg_cluster_stop() {
  local state=$1 data root
  data=$(pg__datadir "$state") || return 0
  root=$(dirname "$data")
  if [ -f "$data/postmaster.pid" ] && pg__ctl "$state" status >/dev/null 2>&1; then
    pg_cluster_down "$state" immediate || return 1
  fi
  # Only ever a directory this script made.
  case $root in
  /tmp/ocrpool-pg.*) rm -rf "$root" ;;
  *) echo "pg.sh: not removing $root: not one of ours" >&2 ;;
  esac
  rm -f "$state/datadir" "$state/url"
}

# Run, not sourced: the command line.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  case ${1:-}:${2:-} in
  start:?*) pg_cluster_start "$2" ;;
  stop:?*) pg_cluster_stop "$2" ;;
  *) echo "usage: $0 start|stop STATE_DIR" >&2; exit 2 ;;
  esac
fi
