#!/usr/bin/env bash
# Olah 0.5.4, a third-party Hugging Face mirror, for tests/test_olah.py:
#
#     bash tests/olah.sh
#
# Creates the virtualenv .venv-olah on first use and installs Olah there (its fastapi, httpx,
# pydantic-settings… must not enter hubd's .venv, where they would hide missing dependencies of
# hubd), reused afterwards; installs Debian's git-lfs when `git lfs` is missing (the test builds
# a real LFS repository for Olah to serve). A failure fails the run: the Olah tests must not skip.
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION=0.5.4
VENV=.venv-olah
STAMP=$VENV/.installed-$VERSION

fail() {
    echo "tests/olah.sh: error: $*" >&2
    exit 1
}

if ! git lfs version >/dev/null 2>&1; then
    echo "tests/olah.sh: installing Debian's git-lfs (git lfs not found)" >&2
    SUDO=()
    [[ $(id -u) -ne 0 ]] && SUDO=(sudo -n)
    export DEBIAN_FRONTEND=noninteractive
    "${SUDO[@]}" apt-get update -qq >&2 || fail "apt-get update failed"
    "${SUDO[@]}" apt-get install -y -qq --no-install-recommends git-lfs >&2 \
        || fail "apt-get install git-lfs failed"
    git lfs version >/dev/null 2>&1 || fail "git-lfs is installed but \`git lfs\` does not run"
fi

if [[ ! -e $STAMP ]]; then
    echo "tests/olah.sh: installing olah==$VERSION into $VENV" >&2
    test -x $VENV/bin/python || "${PYTHON:-python3}" -m venv $VENV || fail "cannot create $VENV"
    $VENV/bin/python -m pip install --quiet "olah==$VERSION" 2>&1 | { grep -v "is ignored" || true; } \
        || fail "pip install olah==$VERSION failed"
    $VENV/bin/olah-cli --help >/dev/null || fail "olah-cli does not run after installing olah==$VERSION"
    touch $STAMP
fi
