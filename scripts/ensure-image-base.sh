#!/usr/bin/env bash
# The image test builds BuildIt's Dockerfile FROM a Debian base, but no registry is reachable here:
# make that base locally instead. debootstrap installs a minimal Debian bookworm from this machine's
# own apt mirror into a directory, which `docker import` turns into an image. Idempotent: does
# nothing when the image exists (so later runs cost nothing); installs debootstrap when missing.
# As root on Debian.
set -euo pipefail

BASE_IMAGE="${BUILDIT_TEST_BASE_IMAGE:-buildit-test/debian-base:bookworm}"
SUITE=bookworm
export DEBIAN_FRONTEND=noninteractive

if docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
    echo "ensure-image-base: $BASE_IMAGE present" >&2
    exit 0
fi

if ! command -v debootstrap >/dev/null 2>&1; then
    echo "ensure-image-base: installing debootstrap" >&2
    if [ ! -f /tmp/.buildit-apt-updated ]; then
        apt-get update -qq && touch /tmp/.buildit-apt-updated
    fi
    apt-get install -y -qq debootstrap >/dev/null
fi

# The Debian mirror apt already uses (BUILDIT_DEBIAN_MIRROR overrides): the first deb822 `URIs:` of
# a Debian archive (not the security one), else the first `deb` line of sources.list.
mirror="${BUILDIT_DEBIAN_MIRROR:-}"
if [ -z "$mirror" ]; then
    mirror="$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null \
        | awk '/^URIs:/ && $2 ~ /debian\/?$/ && $2 !~ /security/ {print $2; exit}')"
fi
if [ -z "$mirror" ] && [ -f /etc/apt/sources.list ]; then
    mirror="$(awk '$1 == "deb" && $0 !~ /security/ {for (i = 2; i <= NF; i++) if ($i ~ /^(https?|file):/) {print $i; exit}}' /etc/apt/sources.list)"
fi
mirror="${mirror:-http://deb.debian.org/debian}"

rootfs="$(mktemp -d /var/tmp/buildit-base.XXXXXX)"
trap 'rm -rf "$rootfs"' EXIT
echo "ensure-image-base: debootstrap $SUITE from $mirror (a minute or two, once)" >&2
debootstrap --variant=minbase "$SUITE" "$rootfs" "$mirror" >"$rootfs.log" 2>&1 || {
    echo "ensure-image-base: debootstrap failed; its log:" >&2; tail -n 30 "$rootfs.log" >&2; exit 1; }
rm -f "$rootfs.log"
# As Docker's debian images do: no package caches in the image.
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
tar -C "$rootfs" -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["bash"]' - "$BASE_IMAGE" >/dev/null
echo "ensure-image-base: made $BASE_IMAGE" >&2
