#!/usr/bin/env bash
# Agents fetch workspaces with the git CLI, and make run's demo repository is made with it.
set -euo pipefail
if ! command -v git >/dev/null 2>&1; then
    echo "ensure-git: installing git" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq git >/dev/null
fi
