#!/usr/bin/env bash
# Run a command (pytest, a benchmark) beside a throwaway PostgreSQL server:
#
#     tests/pg.sh .venv/bin/pytest [ARGS…]
#
# Installs Debian's postgresql when initdb is missing, creates a cluster in a temp dir (owned by
# the postgres user when run as root: initdb refuses root), listens on a Unix socket in that dir
# only (no port to collide with), exports HUBD_TEST_PG_URL (a database the command may use, and a
# role allowed to create more), runs the command and removes the cluster however it ends.
# A failure to install or start PostgreSQL fails the run: CI must not skip those tests silently.
# HUBD_TEST_PG=skip runs the command without PostgreSQL (the PG tests then skip).
set -euo pipefail

if [[ "${HUBD_TEST_PG:-}" == skip ]]; then
    echo "tests/pg.sh: HUBD_TEST_PG=skip: running without PostgreSQL" >&2
    exec "$@"
fi

fail() {
    echo "tests/pg.sh: error: $*" >&2
    echo "tests/pg.sh: hint: HUBD_TEST_PG=skip runs the tests without PostgreSQL" >&2
    exit 1
}

pg_bindir() {
    local dir
    for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        [[ -x "$dir/initdb" && -x "$dir/pg_ctl" ]] && { echo "$dir"; return; }
    done
    dir=$(dirname "$(command -v initdb 2>/dev/null || echo /nonexistent/initdb)")
    [[ -x "$dir/initdb" && -x "$dir/pg_ctl" ]] && echo "$dir"
}

BINDIR=$(pg_bindir || true)
if [[ -z "$BINDIR" ]]; then
    echo "tests/pg.sh: installing Debian's postgresql (initdb and pg_ctl not found)" >&2
    SUDO=()
    [[ $(id -u) -ne 0 ]] && SUDO=(sudo -n)
    export DEBIAN_FRONTEND=noninteractive
    "${SUDO[@]}" apt-get update -qq >&2 || fail "apt-get update failed"
    "${SUDO[@]}" apt-get install -y -qq --no-install-recommends postgresql >&2 \
        || fail "apt-get install postgresql failed"
    BINDIR=$(pg_bindir || true)
    [[ -n "$BINDIR" ]] || fail "postgresql is installed but initdb/pg_ctl were not found"
fi

DIR=$(mktemp -d "${TMPDIR:-/tmp}/hubd-pg.XXXXXX")
AS=()
if [[ $(id -u) -eq 0 ]]; then
    id -u postgres >/dev/null 2>&1 || fail "running as root and there is no postgres user"
    chown postgres: "$DIR"
    AS=(runuser -u postgres --)
fi

cleanup() {
    "${AS[@]}" "$BINDIR/pg_ctl" -D "$DIR/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$DIR"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A throwaway cluster: durability off (it only costs time here); a time zone far from UTC, so a
# datetime that loses its zone shows in the tests.
"${AS[@]}" "$BINDIR/initdb" -D "$DIR/data" -U hubd -A trust -E UTF8 --locale=C --no-sync \
    >"$DIR/initdb.log" 2>&1 || { cat "$DIR/initdb.log" >&2; fail "initdb failed"; }
"${AS[@]}" "$BINDIR/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w -t 30 start \
    -o "-c listen_addresses='' -k $DIR -c fsync=off -c synchronous_commit=off \
        -c full_page_writes=off -c max_connections=200 -c timezone=Pacific/Chatham" >/dev/null \
    || { cat "$DIR/server.log" >&2; fail "PostgreSQL did not start"; }
"$BINDIR/psql" -h "$DIR" -U hubd -d postgres -qAt -c "CREATE DATABASE hubd" >/dev/null \
    || { cat "$DIR/server.log" >&2; fail "cannot create the test database"; }

export HUBD_TEST_PG_URL="postgresql+psycopg://hubd@/hubd?host=$DIR"
echo "tests/pg.sh: PostgreSQL $("$BINDIR/postgres" --version | awk '{print $3}') at $DIR" >&2
status=0
"$@" || status=$?
exit "$status"
