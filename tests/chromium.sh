#!/usr/bin/env bash
# Debian's Chromium for tests/test_web.py (Playwright drives it through executable_path: its own
# browser download is not reachable from here, and `playwright install` is never run), and
# axe-core from the npm registry for its accessibility check.
#
#     bash tests/chromium.sh
#
# Installs the package when /usr/bin/chromium is missing and checks that it starts headless;
# installs axe-core (pinned) into .browser-tests/ when it is not there yet. A failure fails
# `make test` loudly: the browser tests must not skip.
set -euo pipefail

CHROMIUM=/usr/bin/chromium
AXE_VERSION=4.14.1
AXE_DIR="$(cd "$(dirname "$0")/.." && pwd)/.browser-tests"

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

if [[ ! -s "$AXE_DIR/node_modules/axe-core/axe.min.js" ]] \
    || ! grep -q "\"version\": \"$AXE_VERSION\"" "$AXE_DIR/node_modules/axe-core/package.json"; then
    command -v npm >/dev/null || fail "npm is missing: apt-get install npm (for axe-core)"
    echo "tests/chromium.sh: installing axe-core $AXE_VERSION into $AXE_DIR" >&2
    npm install --prefix "$AXE_DIR" "axe-core@$AXE_VERSION" --no-save --silent --no-audit \
        --no-fund >&2 || fail "npm install axe-core failed"
fi
echo "tests/chromium.sh: axe-core $AXE_VERSION" >&2
