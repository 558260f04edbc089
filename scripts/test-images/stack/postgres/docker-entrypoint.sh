#!/bin/bash
# Entrypoint of slipway-test/postgres:15, a reduced copy of the official image's:
# on an empty $PGDATA, initdb as user postgres with POSTGRES_USER (default postgres),
# POSTGRES_PASSWORD (required unless POSTGRES_HOST_AUTH_METHOD=trust) and POSTGRES_DB
# (default: the user), run /docker-entrypoint-initdb.d/*.sql|*.sh, then exec postgres as
# PID 1 (listening on 0.0.0.0:5432, password auth over the network, trust on the socket).
set -Eeuo pipefail

if [[ ${1:-} == -* ]]; then
    set -- postgres "$@"
fi
if [[ ${1:-} != postgres ]]; then
    exec "$@"
fi

if [[ $(id -u) == 0 ]]; then
    mkdir -p "$PGDATA" /var/run/postgresql
    # A fresh named volume is owned by root: hand it to postgres.
    find "$PGDATA" \! -user postgres -exec chown postgres:postgres '{}' +
    chmod 0700 "$PGDATA"
    chown postgres:postgres /var/run/postgresql
    exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi

if [[ ! -s $PGDATA/PG_VERSION ]]; then
    user=${POSTGRES_USER:-postgres}
    db=${POSTGRES_DB:-$user}
    auth=${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}
    if [[ -z ${POSTGRES_PASSWORD:-} && $auth != trust ]]; then
        echo "error: database is uninitialized and POSTGRES_PASSWORD is not set" >&2
        echo "       (set POSTGRES_PASSWORD, or POSTGRES_HOST_AUTH_METHOD=trust)" >&2
        exit 1
    fi
    pwfile="$(mktemp)"
    printf '%s\n' "${POSTGRES_PASSWORD:-}" >"$pwfile"
    echo "initdb: user $user, database $db, host auth $auth"
    initdb -D "$PGDATA" --username="$user" --pwfile="$pwfile" -E UTF8 --locale=C.UTF-8 \
        --auth-local=trust --auth-host="$auth" --no-instructions >/dev/null
    rm -f "$pwfile"
    printf 'host all all all %s\n' "$auth" >>"$PGDATA/pg_hba.conf"
    printf "listen_addresses = '*'\n" >>"$PGDATA/postgresql.conf"
    # Temporary server for the database and init scripts, on a private socket only, so
    # that `pg_isready` (default socket) cannot report it ready before the real one.
    export PGHOST=/tmp/pg-init
    mkdir -p "$PGHOST"
    pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -k $PGHOST" -w -t 60 start >/dev/null
    if [[ $db != postgres ]]; then
        psql -v ON_ERROR_STOP=1 -qX --username "$user" --dbname postgres \
            -c "CREATE DATABASE \"$db\"" >/dev/null
    fi
    for f in /docker-entrypoint-initdb.d/*; do
        case $f in
        *.sql) echo "running $f" && psql -v ON_ERROR_STOP=1 -qX --username "$user" --dbname "$db" -f "$f" ;;
        *.sh) echo "running $f" && . "$f" ;;
        *) ;;
        esac
    done
    pg_ctl -D "$PGDATA" -m fast -w -t 60 stop >/dev/null
    unset PGHOST
    rm -rf /tmp/pg-init
    echo "initdb: done"
fi

exec "$@"
