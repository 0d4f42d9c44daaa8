#!/bin/bash
# The part of the official postgres image's entrypoint that the stacks rely on: on an empty
# $PGDATA, initdb with POSTGRES_USER / POSTGRES_PASSWORD (or POSTGRES_PASSWORD_FILE, a
# secret's file), create POSTGRES_DB, accept password (scram-sha-256) connections from the
# network; then run the server as `postgres`.
set -euo pipefail

if [[ ${1:-} != postgres ]]; then
    exec "$@"
fi

if [[ -n ${POSTGRES_PASSWORD_FILE:-} ]]; then
    POSTGRES_PASSWORD=$(<"$POSTGRES_PASSWORD_FILE")
fi
: "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD or POSTGRES_PASSWORD_FILE must be set}"
user=${POSTGRES_USER:-postgres}
db=${POSTGRES_DB:-$user}
as_postgres=()

if [[ $(id -u) == 0 ]]; then
    mkdir -p "$PGDATA" /var/run/postgresql
    chown postgres:postgres "$PGDATA" /var/run/postgresql
    chmod 700 "$PGDATA"
    as_postgres=(setpriv --reuid=postgres --regid=postgres --init-groups)
fi

if [[ ! -s $PGDATA/PG_VERSION ]]; then
    pwfile=$(mktemp)
    printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
    chown postgres "$pwfile" 2>/dev/null || true
    "${as_postgres[@]}" initdb --username="$user" --pwfile="$pwfile" --auth-local=trust \
        --auth-host=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 -D "$PGDATA" >/dev/null
    rm -f "$pwfile"
    printf '\nhost all all all scram-sha-256\n' >>"$PGDATA/pg_hba.conf"
    printf "listen_addresses = '*'\n" >>"$PGDATA/postgresql.auto.conf"

    # Socket-only server while the database is created, so nothing sees it ready early.
    "${as_postgres[@]}" pg_ctl -D "$PGDATA" -w -o "-c listen_addresses=''" start >/dev/null
    if [[ $db != postgres ]]; then
        # Through stdin: psql interpolates :"db" (quoted identifier) there, not in -c.
        echo 'CREATE DATABASE :"db";' | "${as_postgres[@]}" psql -v ON_ERROR_STOP=1 -q \
            --username="$user" --dbname=postgres --set=db="$db"
    fi
    "${as_postgres[@]}" pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
    echo "database $db initialised for user $user"
fi

exec "${as_postgres[@]}" "$@"
