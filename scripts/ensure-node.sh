#!/usr/bin/env bash
# The web UI's front-end libraries come from the npm registry (web/package.json + lockfile):
# install Debian's nodejs and npm when npm is missing. Idempotent; as root on Debian.
set -euo pipefail
if ! command -v npm >/dev/null 2>&1 || ! command -v node >/dev/null 2>&1; then
    echo "ensure-node: installing nodejs npm" >&2
    export DEBIAN_FRONTEND=noninteractive
    if [ ! -f /tmp/.buildit-apt-updated ]; then
        apt-get update -qq && touch /tmp/.buildit-apt-updated
    fi
    apt-get install -y -qq nodejs npm >/dev/null
fi
