# A throwaway PostgreSQL cluster on a free loopback port, for scripts/test and scripts/bench
# (sourced, not run). `start_postgres [SETTING=VALUE …]` installs Debian's postgresql package if
# it is missing (as root), starts a cluster in a temporary directory with the given server
# settings, exports POSTGRES_URL (postgres://postgres@127.0.0.1:PORT/postgres) and removes the
# cluster when the sourcing script exits, also on INT, TERM and HUP.

as_pg() {
    # As root, the cluster runs as the `postgres` user (the server refuses to run as root).
    if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

stop_postgres() {
    if [ -n "${PGDIR:-}" ] && [ -f "$PGDIR/data/postmaster.pid" ]; then
        as_pg "$PGBIN/pg_ctl" -D "$PGDIR/data" -m immediate stop >/dev/null 2>&1 || true
    fi
    if [ -n "${PGDIR:-}" ]; then rm -rf "$PGDIR"; fi
}

start_postgres() {
    if ! compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null; then
        if [ "$(id -u)" -ne 0 ]; then
            echo "PostgreSQL is not installed and installing it needs root" >&2
            exit 1
        fi
        echo "installing PostgreSQL (Debian package; the cluster used here is a new one)"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq postgresql >/dev/null
    fi
    PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
    PGDIR=$(mktemp -d)
    trap stop_postgres EXIT
    # Without these, bash killed by a signal exits without running the EXIT trap.
    trap 'exit 130' INT
    trap 'exit 143' TERM
    trap 'exit 129' HUP
    if [ "$(id -u)" -eq 0 ]; then chown postgres "$PGDIR"; fi

    as_pg "$PGBIN/initdb" -D "$PGDIR/data" -U postgres --auth=trust --no-sync >"$PGDIR/initdb.log"
    local options="-k $PGDIR -c listen_addresses=127.0.0.1 -c max_connections=200"
    local setting
    for setting in "$@"; do options="$options -c $setting"; done
    local candidate port=
    for _ in $(seq 1 20); do
        candidate=$((20000 + RANDOM % 40000))
        if as_pg "$PGBIN/pg_ctl" -D "$PGDIR/data" -l "$PGDIR/log" -w -t 30 start \
            -o "-p $candidate $options" >/dev/null; then
            port=$candidate
            break
        fi
    done
    if [ -z "$port" ]; then
        echo "could not start PostgreSQL; its log:" >&2
        cat "$PGDIR/log" >&2 || true
        exit 1
    fi
    export POSTGRES_URL="postgres://postgres@127.0.0.1:$port/postgres"
    echo "PostgreSQL $("$PGBIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$port ($PGDIR)"
}
