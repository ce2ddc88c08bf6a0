#!/usr/bin/env bash
# The browser tests (tests/e2e) drive Debian's chromium with Playwright (`playwright install`
# cannot download a browser here): install it when /usr/bin/chromium is missing. Idempotent.
set -euo pipefail
if [ ! -x /usr/bin/chromium ]; then
    echo "ensure-chromium: installing chromium" >&2
    export DEBIAN_FRONTEND=noninteractive
    if [ ! -f /tmp/.buildit-apt-updated ]; then
        apt-get update -qq && touch /tmp/.buildit-apt-updated
    fi
    apt-get install -y -qq chromium >/dev/null
fi
