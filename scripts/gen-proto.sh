#!/usr/bin/env bash
# Generate the Python code for buildit.proto (called by `make proto` and `make proto-check`).
#
#   scripts/gen-proto.sh PY OUTDIR                        generate into OUTDIR (make proto)
#   scripts/gen-proto.sh PY SCRATCH --check COMMITTED     generate into SCRATCH, compare with COMMITTED
#                                                          (make proto-check); exit 1 when they differ
#
# PY is the Python with grpcio-tools installed (its pinned, bundled protoc decides the output, so
# the result is byte-for-byte reproducible). OUTDIR defaults to the repository's agent/contract/_gen.
# Relative paths given are taken from the current directory. In --check mode a new or empty SCRATCH
# directory (e.g. from mktemp -d) is removed afterwards.
set -euo pipefail

usage() {
    echo "usage: $0 PY [OUTDIR] | $0 PY SCRATCH --check COMMITTED" >&2
    exit 2
}

abspath_dir() { # print the absolute path of directory $1, creating it
    mkdir -p -- "$1" && (cd -- "$1" && pwd)
}

[[ $# -ge 1 ]] || usage
root="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)"
py="$1"
out="${2:-$root/agent/contract/_gen}"
check=""
committed_arg=""
if [[ $# -ge 3 ]]; then
    [[ "$3" == "--check" && $# -eq 4 ]] || usage
    committed_arg="$4"
    [[ -d "$committed_arg" ]] || {
        echo "$committed_arg is stale: run make proto (the directory does not exist)" >&2
        exit 1
    }
    check="$(cd -- "$committed_arg" && pwd)"
fi

# Resolve everything the caller gave relative to their directory, then work from the repository root
# so that protoc sees `buildit.proto` by the same relative name every time (it is embedded in the output).
if [[ "$py" == */* ]]; then
    py="$(cd -- "$(dirname -- "$py")" && pwd)/$(basename -- "$py")"
fi
scratch_was_empty=""  # a scratch directory that is new or empty is ours to remove afterwards
if [[ -n "$check" ]] && { [[ ! -e "$out" ]] || [[ -d "$out" && -z "$(ls -A -- "$out")" ]]; }; then
    scratch_was_empty=1
fi
out="$(abspath_dir "$out")"
if [[ -n "$check" && "$out" == "$check" ]]; then
    echo "gen-proto: the scratch directory must differ from the one checked" >&2
    exit 2
fi
cd -- "$root"

stage="$(mktemp -d)"
cleanup() {
    rm -rf -- "$stage"
    if [[ -n "$scratch_was_empty" ]]; then rm -rf -- "$out"; fi
}
trap cleanup EXIT

"$py" -m grpc_tools.protoc -I. \
    --python_out="$stage" --grpc_python_out="$stage" --pyi_out="$stage" \
    buildit.proto

# The generated stub imports its messages as a top-level module; make it package-relative so that
# agent.contract._gen is an ordinary package.
grpc_file="$stage/buildit_pb2_grpc.py"
grep -q '^import buildit_pb2 as buildit__pb2$' "$grpc_file" || {
    echo "gen-proto: unexpected import line in buildit_pb2_grpc.py (grpcio-tools changed?)" >&2
    exit 1
}
sed -e 's/^import buildit_pb2 as buildit__pb2$/from . import buildit_pb2 as buildit__pb2/' \
    "$grpc_file" >"$grpc_file.tmp"
mv -- "$grpc_file.tmp" "$grpc_file"

printf '"""Generated from buildit.proto by `make proto`; do not edit."""\n' >"$stage/__init__.py"

# Replace the output directory's contents (a removed message file must not linger); caches are kept.
find "$out" -mindepth 1 -maxdepth 1 ! -name __pycache__ -exec rm -rf -- {} +
cp -- "$stage"/* "$out"/

if [[ -n "$check" ]]; then
    if ! diff -ru -x __pycache__ -- "$check" "$out" >&2; then
        echo "" >&2
        echo "$committed_arg is stale: run make proto" >&2
        exit 1
    fi
    echo "$committed_arg is up to date with buildit.proto"
fi
