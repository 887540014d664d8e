#!/usr/bin/env bash
# Debian's Chromium for tests/test_web.py (Playwright drives it through executable_path: its own
# browser download is not reachable from here, and `playwright install` is never run).
#
#     bash tests/chromium.sh
#
# Installs the package when /usr/bin/chromium is missing and checks that it starts headless.
# A failure fails `make test` loudly: the browser tests must not skip.
set -euo pipefail

CHROMIUM=/usr/bin/chromium

fail() {
    echo "tests/chromium.sh: error: $*" >&2
    exit 1
}

if [[ ! -x "$CHROMIUM" ]]; then
    command -v apt-get >/dev/null || fail "$CHROMIUM is missing and there is no apt-get to install it"
    sudo=()
    [[ $(id -u) == 0 ]] || sudo=(sudo)
    echo "tests/chromium.sh: installing Debian's chromium" >&2
    "${sudo[@]}" apt-get update -qq || fail "apt-get update failed"
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq chromium >/dev/null \
        || fail "apt-get install chromium failed"
fi
[[ -x "$CHROMIUM" ]] || fail "$CHROMIUM is still missing after the install"
version=$("$CHROMIUM" --headless --no-sandbox --disable-gpu --version 2>/dev/null) \
    || fail "$CHROMIUM does not start"
echo "tests/chromium.sh: $version" >&2
