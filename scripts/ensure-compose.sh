#!/usr/bin/env bash
# The image tests check compose.yaml with Compose itself: use `docker compose` (v2) when the engine
# has it, else Debian's docker-compose (v1.29, installed when missing). Idempotent; as root on Debian.
set -euo pipefail
if docker compose version >/dev/null 2>&1 || command -v docker-compose >/dev/null 2>&1; then
    exit 0
fi
echo "ensure-compose: installing docker-compose" >&2
export DEBIAN_FRONTEND=noninteractive
if [ ! -f /tmp/.buildit-apt-updated ]; then
    apt-get update -qq && touch /tmp/.buildit-apt-updated
fi
apt-get install -y -qq docker-compose >/dev/null
