#!/usr/bin/env bash
# Make a real Docker engine reachable for the tests and build the local test image.
# Idempotent: installs docker.io and busybox-static only when missing, starts dockerd
# only when `docker info` fails, builds buildit-test/busybox:1 only when absent.
# No registry is reachable here, so the test image is imported from Debian's busybox-static.
set -euo pipefail

TEST_IMAGE="${BUILDIT_TEST_IMAGE:-buildit-test/busybox:1}"
export DEBIAN_FRONTEND=noninteractive

apt_install() {
    if [ ! -f /tmp/.buildit-apt-updated ]; then
        apt-get update -qq && touch /tmp/.buildit-apt-updated
    fi
    apt-get install -y -qq "$@" >/dev/null
}

if ! command -v dockerd >/dev/null 2>&1; then
    echo "ensure-docker: installing docker.io" >&2
    apt_install docker.io
fi
if [ ! -x /bin/busybox ]; then
    echo "ensure-docker: installing busybox-static" >&2
    apt_install busybox-static
fi

if ! docker info >/dev/null 2>&1; then
    echo "ensure-docker: starting dockerd (no bridge, no iptables)" >&2
    mkdir -p /var/log
    nohup dockerd --bridge=none --iptables=false >/var/log/buildit-dockerd.log 2>&1 &
    for _ in $(seq 1 60); do
        docker info >/dev/null 2>&1 && break
        sleep 0.5
    done
    docker info >/dev/null 2>&1 || { echo "ensure-docker: dockerd did not start; see /var/log/buildit-dockerd.log" >&2; exit 1; }
fi

if ! docker image inspect "$TEST_IMAGE" >/dev/null 2>&1; then
    echo "ensure-docker: building $TEST_IMAGE from busybox-static" >&2
    rootfs="$(mktemp -d)"
    trap 'rm -rf "$rootfs"' EXIT
    mkdir -p "$rootfs/bin" "$rootfs/tmp" "$rootfs/workspace" "$rootfs/etc"
    cp /bin/busybox "$rootfs/bin/busybox"
    for applet in $(/bin/busybox --list); do
        [ "$applet" = busybox ] || ln -sf busybox "$rootfs/bin/$applet"
    done
    echo 'root:x:0:0:root:/root:/bin/sh' > "$rootfs/etc/passwd"
    chmod 1777 "$rootfs/tmp"
    tar -C "$rootfs" -c . | docker import \
        --change 'ENV PATH=/bin' --change 'CMD ["/bin/sh"]' - "$TEST_IMAGE" >/dev/null
fi
echo "ensure-docker: engine ready, test image $TEST_IMAGE present" >&2
