#!/usr/bin/env bash
# A throwaway PostgreSQL cluster on loopback, for tests and CI.
#
#   scripts/pg-test-cluster.sh [start] [DIR]  → prints postgres://postgres@127.0.0.1:PORT/polytun_test
#   scripts/pg-test-cluster.sh stop [DIR]     → stops the cluster and deletes DIR
#
# DIR defaults to a fresh mktemp folder; without DIR, `stop` stops the cluster
# the last DIR-less `start` made (recorded in $TMPDIR/polytun-pg-test.last).
# Trust authentication, listening on 127.0.0.1 only (socket in /tmp), fsync
# off: for tests, never for data. As root, the server runs as user `postgres`
# (initdb refuses root), so DIR must be reachable by that user.
#
# Exit codes: 0 ok, 1 failure, 3 PostgreSQL binaries not found (set PG_BIN to
# their folder, or apt-get install postgresql).
set -euo pipefail

STATE="${TMPDIR:-/tmp}/polytun-pg-test.last"
MARK=".polytun-pg-test"
DB="polytun_test"

die() { echo "pg-test-cluster: $*" >&2; exit 1; }

find_bin() {
  if [[ -n "${PG_BIN:-}" ]]; then
    [[ -x "$PG_BIN/initdb" ]] && { echo "$PG_BIN"; return 0; }
    return 1
  fi
  local d
  # Debian keeps the server binaries off PATH, one folder per major version: take the newest.
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k4 -V -r); do
    [[ -x "$d/initdb" ]] && { echo "$d"; return 0; }
  done
  if command -v pg_config >/dev/null 2>&1 && [[ -x "$(pg_config --bindir)/initdb" ]]; then pg_config --bindir; return 0; fi
  if command -v initdb >/dev/null 2>&1; then dirname "$(command -v initdb)"; return 0; fi
  return 1
}

# Runs a command as the cluster owner: `postgres` when we are root, else ourselves.
as_owner() {
  if [[ "$(id -u)" != 0 ]]; then "$@"; return; fi
  if command -v runuser >/dev/null 2>&1; then runuser -u postgres -- "$@"; return; fi
  su postgres -s /bin/sh -c "$(printf '%q ' "$@")"
}

free_port() {
  node -e "const s=require('net').createServer();s.listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close();})"
}

start() {
  local dir="${1:-}" record=0 bin port started=0
  bin="$(find_bin)" || { echo "pg-test-cluster: PostgreSQL binaries not found (install postgresql or set PG_BIN)" >&2; exit 3; }
  if [[ -z "$dir" ]]; then dir="$(mktemp -d "${TMPDIR:-/tmp}/polytun-pg.XXXXXX")"; record=1; fi
  mkdir -p "$dir"
  dir="$(cd "$dir" && pwd)"
  [[ -z "$(ls -A "$dir")" ]] || die "$dir is not empty"
  touch "$dir/$MARK"
  if [[ "$(id -u)" == 0 ]]; then
    id postgres >/dev/null 2>&1 || die "running as root needs a 'postgres' user to own the cluster"
    chown postgres: "$dir"
    as_owner test -w "$dir" || die "user postgres cannot write to $dir (a parent folder is private?)"
  fi
  as_owner "$bin/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --no-locale >"$dir/initdb.log" 2>&1 \
    || die "initdb failed, see $dir/initdb.log"
  # The port can be taken between free_port and the server's bind: retry a few times.
  for _ in 1 2 3 4 5; do
    port="$(free_port)"
    if as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 \
        -o "-k /tmp -h 127.0.0.1 -p $port -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" \
        start >/dev/null; then
      started=1
      break
    fi
  done
  [[ "$started" == 1 ]] || die "the server did not start, see $dir/server.log"
  "$bin/psql" -X -q -h 127.0.0.1 -p "$port" -U postgres -d postgres -c "CREATE DATABASE $DB" >/dev/null \
    || die "CREATE DATABASE failed"
  echo "$port" >"$dir/port"
  [[ "$record" == 1 ]] && echo "$dir" >"$STATE"
  echo "pg-test-cluster: data in $dir" >&2
  echo "postgres://postgres@127.0.0.1:$port/$DB"
}

stop() {
  local dir="${1:-}" bin
  if [[ -z "$dir" ]]; then
    [[ -f "$STATE" ]] || die "no DIR given and no cluster recorded in $STATE"
    dir="$(cat "$STATE")"
    rm -f "$STATE"
  fi
  [[ -d "$dir" ]] || { echo "pg-test-cluster: $dir is already gone" >&2; return 0; }
  # Never delete a folder this script did not make.
  [[ -f "$dir/$MARK" ]] || die "$dir was not made by pg-test-cluster.sh; not touching it"
  if [[ -f "$dir/data/postmaster.pid" ]]; then
    bin="$(find_bin)" || { echo "pg-test-cluster: PostgreSQL binaries not found" >&2; exit 3; }
    as_owner "$bin/pg_ctl" -D "$dir/data" -m fast -w -t 30 stop >/dev/null || die "pg_ctl stop failed"
  fi
  rm -rf -- "$dir"
}

case "${1:-start}" in
  start) start "${2:-}" ;;
  stop) stop "${2:-}" ;;
  /*|.*) start "$1" ;;
  *) die "usage: $0 [start [DIR] | stop [DIR]]" ;;
esac
