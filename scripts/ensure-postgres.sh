#!/usr/bin/env bash
# Make a real PostgreSQL reachable for the tests and print its URL on stdout.
# Idempotent (as root on Debian): installs postgresql only when pg_ctlcluster is missing, creates
# the cluster only when there is none, makes it listen on 127.0.0.1 only, starts it only when it is
# down, and creates the role `buildit` (password `buildit`, CREATEDB so each test can get a fresh
# database of its own) and the database `buildit_test` only when absent.
# Everything but the URL goes to stderr, so `url=$(scripts/ensure-postgres.sh)` works.
set -euo pipefail

ROLE=buildit
PASSWORD=buildit
DATABASE=buildit_test
export DEBIAN_FRONTEND=noninteractive

log() { echo "ensure-postgres: $*" >&2; }

apt_install() {
    if [ ! -f /tmp/.buildit-apt-updated ]; then
        apt-get update -qq >&2 && touch /tmp/.buildit-apt-updated
    fi
    apt-get install -y -qq "$@" >/dev/null
}

if ! command -v pg_ctlcluster >/dev/null 2>&1; then
    log "installing postgresql"
    apt_install postgresql
fi

# The newest installed server version, e.g. 15 on Debian 12.
version="$(ls /usr/lib/postgresql 2>/dev/null | sort -V | tail -n 1)"
[ -n "$version" ] || { log "no PostgreSQL server found under /usr/lib/postgresql"; exit 1; }

if [ ! -d "/etc/postgresql/$version/main" ]; then
    log "creating cluster $version/main"
    pg_createcluster "$version" main >&2
fi

# Loopback only: the test database has a well-known password.
conf="/etc/postgresql/$version/main/conf.d/buildit.conf"
wanted="listen_addresses = '127.0.0.1'"
config_changed=no
if [ "$(cat "$conf" 2>/dev/null)" != "$wanted" ]; then
    mkdir -p "$(dirname "$conf")"
    echo "$wanted" >"$conf"
    config_changed=yes
fi

if pg_ctlcluster "$version" main status >/dev/null 2>&1; then
    if [ "$config_changed" = yes ]; then
        log "restarting cluster $version/main to listen on 127.0.0.1 only"
        pg_ctlcluster "$version" main restart >&2
    fi
else
    log "starting cluster $version/main"
    pg_ctlcluster "$version" main start >&2
fi

port="$(pg_conftool -s "$version" main show port 2>/dev/null || echo 5432)"

psql_admin() {
    runuser -u postgres -- psql --port "$port" -X -q -v ON_ERROR_STOP=1 -tA "$@"
}

for _ in $(seq 1 50); do
    psql_admin -c 'SELECT 1' >/dev/null 2>&1 && break
    sleep 0.2
done

if [ "$(psql_admin -c "SELECT 1 FROM pg_roles WHERE rolname = '$ROLE'")" != 1 ]; then
    log "creating role $ROLE"
    psql_admin -c "CREATE ROLE $ROLE LOGIN CREATEDB PASSWORD '$PASSWORD'"
else
    # An older role may lack CREATEDB (the per-test databases need it) or have another password.
    psql_admin -c "ALTER ROLE $ROLE LOGIN CREATEDB PASSWORD '$PASSWORD'"
fi

if [ "$(psql_admin -c "SELECT 1 FROM pg_database WHERE datname = '$DATABASE'")" != 1 ]; then
    log "creating database $DATABASE"
    psql_admin -c "CREATE DATABASE $DATABASE OWNER $ROLE"
fi

log "cluster $version/main ready on 127.0.0.1:$port"
echo "postgresql://$ROLE:$PASSWORD@127.0.0.1:$port/$DATABASE"
