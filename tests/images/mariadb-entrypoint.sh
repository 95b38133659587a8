#!/bin/sh
# The test image's MariaDB entrypoint: the official image's contract, as far as alveole uses it.
# Arguments starting with "-" are the server's; at first start (an empty data directory) it makes
# the database and user of MARIADB_DATABASE, MARIADB_USER and MARIADB_PASSWORD, with a root
# password from MARIADB_ROOT_PASSWORD or, with MARIADB_RANDOM_ROOT_PASSWORD, a random one never
# shown. Runs as the mysql user: nothing here needs root.
set -eu
case "${1:-}" in -*) set -- mariadbd "$@" ;; esac
[ "${1:-}" = mariadbd ] || exec "$@"

datadir=/var/lib/mysql
socket=/run/mysqld/mysqld.sock
if [ ! -d "$datadir/mysql" ]; then
    : "${MARIADB_DATABASE:?MARIADB_DATABASE is required}"
    : "${MARIADB_USER:?MARIADB_USER is required}"
    : "${MARIADB_PASSWORD:?MARIADB_PASSWORD is required}"
    if [ -n "${MARIADB_RANDOM_ROOT_PASSWORD:-}" ]; then
        MARIADB_ROOT_PASSWORD="$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
    fi
    : "${MARIADB_ROOT_PASSWORD:?MARIADB_ROOT_PASSWORD or MARIADB_RANDOM_ROOT_PASSWORD is required}"
    mariadb-install-db --datadir="$datadir" --skip-test-db --auth-root-authentication-method=normal \
        >/dev/null
    mariadbd --datadir="$datadir" --skip-networking --socket="$socket" &
    pid=$!
    for _ in $(seq 1 300); do
        mariadb-admin --socket="$socket" -uroot ping >/dev/null 2>&1 && break
        sleep 0.1
    done
    quote() { printf "%s" "$1" | sed "s/\\\\/\\\\\\\\/g; s/'/\\\\'/g"; }
    mariadb --socket="$socket" -uroot <<SQL
CREATE DATABASE IF NOT EXISTS \`$MARIADB_DATABASE\`;
CREATE USER '$(quote "$MARIADB_USER")'@'%' IDENTIFIED BY '$(quote "$MARIADB_PASSWORD")';
GRANT ALL ON \`$MARIADB_DATABASE\`.* TO '$(quote "$MARIADB_USER")'@'%';
ALTER USER 'root'@'localhost' IDENTIFIED BY '$(quote "$MARIADB_ROOT_PASSWORD")';
FLUSH PRIVILEGES;
SQL
    kill "$pid"
    wait "$pid" || true
fi
exec "$@"
