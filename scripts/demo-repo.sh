#!/usr/bin/env bash
# `make run`'s demo repository: a Git repository holding examples/dag.kdl as its .buildit.kdl.
#   scripts/demo-repo.sh sync DIR           make it (one commit); later, commit examples/dag.kdl
#                                           again only when it changed since it was last copied
#   scripts/demo-repo.sh commit DIR URL     wait for URL/health, then commit (a watched push; tests)
# Quiet: it prints nothing unless it fails. Your own commits in DIR are left alone. `create` is the
# old name of `sync`. Run it from the checkout's top directory (it reads examples/).
set -euo pipefail
action="$1"; dir="$2"
export GIT_AUTHOR_NAME="BuildIt demo" GIT_AUTHOR_EMAIL="demo@buildit.invalid"
export GIT_COMMITTER_NAME="BuildIt demo" GIT_COMMITTER_EMAIL="demo@buildit.invalid"
pipeline=examples/dag.kdl
[ -f "$pipeline" ] || pipeline=examples/hello.kdl
case "$action" in
sync|create)
    source_id=$(git hash-object "$pipeline")
    stamp="$dir/.git/buildit-demo-source"  # which examples/ file was copied last (not committed)
    if [ ! -d "$dir/.git" ]; then
        mkdir -p "$dir"
        git -C "$dir" init -q -b main
        cp "$pipeline" "$dir/.buildit.kdl"
        echo "A demo repository watched by make run: commit here and a run starts." > "$dir/README"
        git -C "$dir" add .buildit.kdl README
        git -C "$dir" commit -q -m "demo: initial pipeline"
    else
        # A repository made before the stamp existed: what it holds is what was copied.
        last=$(cat "$stamp" 2>/dev/null || git -C "$dir" rev-parse -q --verify HEAD:.buildit.kdl || true)
        if [ "$last" != "$source_id" ]; then
            cp "$pipeline" "$dir/.buildit.kdl"
            git -C "$dir" add .buildit.kdl
            if ! git -C "$dir" diff --cached --quiet; then
                git -C "$dir" commit -q -m "demo: update the pipeline from $pipeline"
            fi
        fi
    fi
    echo "$source_id" > "$stamp"
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
    ;;
*)
    echo "usage: $0 sync DIR | commit DIR URL" >&2; exit 2 ;;
esac
