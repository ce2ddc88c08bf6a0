#!/usr/bin/env bash
# Make sure "$1 -m venv" works (Debian ships venv as a separate package).
set -euo pipefail
py="${1:-python3}"
if ! command -v "$py" >/dev/null 2>&1 || ! "$py" -c 'import venv, ensurepip' >/dev/null 2>&1; then
    echo "ensure-python: installing python3, python3-venv and python3-dev" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq python3 python3-venv python3-dev build-essential >/dev/null
fi
"$py" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' || {
    echo "ensure-python: BuildIt needs Python >= 3.11, found $("$py" --version)" >&2; exit 1; }
