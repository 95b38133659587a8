#!/bin/sh
# The test image's PostgreSQL entrypoint: the official image's contract, as far as alveole uses
# it. Arguments starting with "-" are the server's; at first start (an empty PGDATA) it makes the
# cluster with POSTGRES_USER (default postgres) as its superuser, password POSTGRES_PASSWORD, and
# the database POSTGRES_DB (default the user's name). Local socket connections are trusted (as in
# the official image), TCP ones need the password. Runs as the postgres user.
set -eu
case "${1:-}" in -*) set -- postgres "$@" ;; esac
[ "${1:-}" = postgres ] || exec "$@"

: "${PGDATA:=/var/lib/postgresql/data}"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    : "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD is required}"
    user="${POSTGRES_USER:-postgres}"
    db="${POSTGRES_DB:-$user}"
    chmod 0700 "$PGDATA"
    pwfile="$(mktemp)"
    printf '%s\n' "$POSTGRES_PASSWORD" > "$pwfile"
    initdb -D "$PGDATA" --username="$user" --pwfile="$pwfile" --auth-local=trust \
        --auth-host=scram-sha-256 --encoding=UTF8 >/dev/null
    rm -f "$pwfile"
    pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start >/dev/null
    if [ "$db" != postgres ]; then
        createdb -U "$user" -O "$user" "$db"
    fi
    pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
fi
exec "$@"
