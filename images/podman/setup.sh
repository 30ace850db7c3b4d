#!/usr/bin/env bash
# Makes this machine build and run the images with podman (../../shared/DESIGN.md, "Containers"):
# installs podman, runc, debootstrap and Debian's docker-registry; configures runc and the ulimits
# this kernel allows; makes the Debian bookworm + python3 base image locally, since no registry can
# be pulled from; and writes the build flags that hand the host's pip configuration and local wheel
# folders to `podman build` as read-only mounts. Idempotent; run as root.
set -euo pipefail
cd "$(dirname "$0")/../.."

BASE_IMAGE=localhost/debian-python:bookworm
STATE=build/podman
mkdir -p "$STATE"

# podman-docker and docker-compose: the Docker CLI and compose that the SageMaker SDK's local mode
# drives (tests/images/test_sagemaker_local.py)
images/apt-install.sh podman runc debootstrap docker-registry fuse-overlayfs uidmap podman-docker \
    docker-compose

# crun fails on this cgroup layout; higher nproc limits than these are refused.
mkdir -p /etc/containers/containers.conf.d /etc/containers/registries.conf.d
cat > /etc/containers/containers.conf.d/50-sagemaker-image-mlops.conf <<'CONF'
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=1000:1000"]

[engine]
runtime = "runc"
CONF
# The local test registry (tests/images) speaks plain HTTP on loopback only.
cat > /etc/containers/registries.conf.d/50-local-test-registry.conf <<'CONF'
[[registry]]
location = "127.0.0.1:5000"
insecure = true
CONF

if ! podman image exists "$BASE_IMAGE"; then
    rootfs=$(mktemp -d /var/tmp/debian-python.XXXXXX)
    trap 'rm -rf "$rootfs"' EXIT
    echo "debootstrap bookworm into $rootfs"
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
        bookworm "$rootfs" http://deb.debian.org/debian >"$STATE/debootstrap.log"
    # Builds fetch packages through whatever TLS setup this host trusts.
    cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    tar -C "$rootfs" -c . | podman import --change 'CMD ["/bin/bash"]' - "$BASE_IMAGE" >/dev/null
    rm -rf "$rootfs"
    trap - EXIT
fi

# Wrappers the SDK's local mode finds first in PATH (the tests put $STATE/bin there): `docker context
# inspect` answers where podman prints [] (the SDK indexes it for the host), and docker-compose
# publishes the model server's port on 127.0.0.1 only (the SDK's compose file binds every address).
mkdir -p "$STATE/bin"
cat > "$STATE/bin/docker" <<'SH'
#!/bin/sh
if [ "$1" = context ] && [ "$2" = inspect ]; then
    printf '[{"Name":"default","Endpoints":{"docker":{"Host":"%s"}}}]\n' "${DOCKER_HOST:-unix:///run/podman/podman.sock}"
    exit 0
fi
exec podman "$@"
SH
cat > "$STATE/bin/docker-compose" <<'SH'
#!/bin/sh
previous=
for arg in "$@"; do
    [ "$previous" = -f ] && sed -i -E 's/^( *- )([0-9]+:8080)$/\1127.0.0.1:\2/' "$arg"
    previous=$arg
done
exec /usr/bin/docker-compose "$@"
SH
chmod +x "$STATE/bin/docker" "$STATE/bin/docker-compose"

# The host's pip settings (local wheel folders, file:// indexes), as one pip.conf for the build.
python3 images/podman/pip_mounts.py "$STATE"
echo "podman ready; base image $BASE_IMAGE; build flags in $STATE/build-flags"
