#!/usr/bin/env bash
# `make run`'s demo repository: create it once (a Git repository with a .buildit.kdl), then, once the
# controller answers, commit to it so the watch trigger starts a run you can see.
#   scripts/demo-repo.sh create DIR
#   scripts/demo-repo.sh commit DIR URL     (waits for URL/health, then commits)
set -euo pipefail
action="$1"; dir="$2"
export GIT_AUTHOR_NAME="BuildIt demo" GIT_AUTHOR_EMAIL="demo@buildit.invalid"
export GIT_COMMITTER_NAME="BuildIt demo" GIT_COMMITTER_EMAIL="demo@buildit.invalid"
case "$action" in
create)
    if [ -d "$dir/.git" ]; then exit 0; fi
    mkdir -p "$dir"
    git -C "$dir" init -q -b main
    cp examples/dag.kdl "$dir/.buildit.kdl" 2>/dev/null || cp examples/hello.kdl "$dir/.buildit.kdl"
    echo "A demo repository watched by make run: commit here and a run starts." > "$dir/README"
    git -C "$dir" add -A
    git -C "$dir" commit -q -m "demo: initial pipeline"
    ;;
commit)
    url="$3"
    for _ in $(seq 1 300); do
        python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=1)' \
            "$url/health" >/dev/null 2>&1 && break
        sleep 0.2
    done
    sleep 1  # the repository is registered right after the banner
    date -u +"%Y-%m-%dT%H:%M:%SZ" > "$dir/last-demo-commit"
    git -C "$dir" add last-demo-commit
    git -C "$dir" commit -q -m "demo: a commit made by make run"
    echo "  demo commit:         $(git -C "$dir" rev-parse --short HEAD) in $dir (watch: a run starts)"
    ;;
*)
    echo "usage: $0 create DIR | commit DIR URL" >&2; exit 2 ;;
esac
