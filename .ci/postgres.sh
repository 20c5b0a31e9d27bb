#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for the review service's tests (Debian's `postgresql` package).
#   eval "$(.ci/postgres.sh start)"   creates a cluster in a temporary folder, listening on 127.0.0.1 at a free
#                                     port (trust authentication, this machine only), and prints the exports
#                                     NECKMATCH_TEST_PG_URL (the maintenance database; tests create their own
#                                     databases in it) and NECKMATCH_PG_DIR.
#   .ci/postgres.sh stop [DIR]        stops that cluster and removes its folder (DIR or $NECKMATCH_PG_DIR).
# As root the server runs as the `postgres` user (PostgreSQL refuses to run as root).
set -euo pipefail

bindir() {
  local d
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  [ -n "$d" ] || { echo "postgres.sh: no /usr/lib/postgresql/*/bin; apt-get install -y postgresql" >&2; exit 1; }
  echo "$d"
}

as_owner() {  # run a server command as the cluster's owner
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

start() {
  local bin dir port
  bin=$(bindir)
  dir=$(mktemp -d "${TMPDIR:-/tmp}/neckmatch-pg.XXXXXX")
  chmod 755 "$dir"
  [ "$(id -u)" = 0 ] && chown postgres: "$dir"
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  as_owner "$bin/initdb" -D "$dir/data" -U neckmatch --auth=trust -E UTF8 --no-locale >"$dir/initdb.log" 2>&1 \
    || { cat "$dir/initdb.log" >&2; exit 1; }
  as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=off -c max_connections=100" start >/dev/null \
    || { cat "$dir/server.log" >&2; exit 1; }
  echo "export NECKMATCH_TEST_PG_URL=postgresql+psycopg://neckmatch@127.0.0.1:$port/postgres"
  echo "export NECKMATCH_PG_DIR=$dir"
}

stop() {
  local dir=${1:-${NECKMATCH_PG_DIR:-}}
  [ -n "$dir" ] && [ -d "$dir/data" ] || return 0
  as_owner "$(bindir)/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
  rm -rf "$dir"
}

case "${1:-}" in
  start) start ;;
  stop) stop "${2:-}" ;;
  *) echo "usage: $0 start|stop [DIR]" >&2; exit 2 ;;
esac
