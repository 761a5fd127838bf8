#!/usr/bin/env bash
# The PostgreSQL server the tests of the central registry talk to: Debian's package, a
# running cluster, and a role and database for the tests. Idempotent: run it as often as
# you like (CI runs it before the tests). Needs root (or sudo) the first time.
#
# The tests find the server by PUF_TEST_POSTGRES, whose default is what this script makes:
#   postgresql+psycopg://puf_test:puf_test@127.0.0.1:5432/puf_test
set -euo pipefail
ROLE=puf_test
DATABASE=puf_test
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
as_postgres() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else sudo -u postgres "$@"; fi; }

if ! command -v pg_lsclusters >/dev/null; then
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq postgresql >/dev/null
fi
# The newest cluster; make one if the package left none (a container without its post-install).
read -r VERSION CLUSTER PORT STATUS _ < <(pg_lsclusters --no-header | sort -V | tail -n 1) || true
if [ -z "${VERSION:-}" ]; then
    VERSION=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
    as_root pg_createcluster "$VERSION" main >/dev/null
    read -r VERSION CLUSTER PORT STATUS _ < <(pg_lsclusters --no-header | sort -V | tail -n 1)
fi
if [ "$STATUS" != online ]; then
    as_root pg_ctlcluster "$VERSION" "$CLUSTER" start
fi
if [ "$PORT" != 5432 ]; then
    echo "note: the cluster listens on port $PORT: set PUF_TEST_POSTGRES to" \
         "postgresql+psycopg://$ROLE:$ROLE@127.0.0.1:$PORT/$DATABASE" >&2
fi
psql_do() { as_postgres psql -p "$PORT" -qtAX -v ON_ERROR_STOP=1 "$@"; }
if [ "$(psql_do -c "SELECT 1 FROM pg_roles WHERE rolname = '$ROLE'")" != 1 ]; then
    psql_do -c "CREATE ROLE $ROLE LOGIN PASSWORD '$ROLE'"
fi
if [ "$(psql_do -c "SELECT 1 FROM pg_database WHERE datname = '$DATABASE'")" != 1 ]; then
    psql_do -c "CREATE DATABASE $DATABASE OWNER $ROLE"
fi
echo "PostgreSQL $VERSION ($CLUSTER, port $PORT) is up; database $DATABASE, role $ROLE"
