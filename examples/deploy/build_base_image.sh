#!/usr/bin/env bash
# Build the two base images the deployment names (python:3.11-slim, redis:7) from Debian packages, for
# machines that reach Debian's mirror but no container registry. Run as root, with podman installed:
#
#   examples/deploy/build_base_image.sh            # prints the tag it made or found
#
# One Debian bookworm root file system (debootstrap --variant=minbase, plus python3 and redis-server:
# Python 3.11 and Redis 7.0, the versions the names promise) is imported twice with `podman import`, once per
# name, each with the working directory and command the official image has. The result is cached by a hash
# of this script: a second run with the images present does nothing; with only the root file system tarball
# cached (TASKQ_BASE_CACHE, default ~/.cache/taskq/deploy) it re-imports without debootstrap.
set -euo pipefail

ENGINE=${ENGINE:-podman}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
CACHE=${TASKQ_BASE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/taskq/deploy}
PACKAGES=python3,python3-pip,python3-venv,redis-server,ca-certificates,passwd
PYTHON_TAG=docker.io/library/python:3.11-slim
REDIS_TAG=docker.io/library/redis:7

hash=$(sha256sum "$0" | cut -c1-12)
label=io.taskq.base=$hash

have() { # the image exists and was made by this version of the script
  [ "$("$ENGINE" image inspect --format '{{index .Labels "io.taskq.base"}}' "$1" 2>/dev/null || true)" = "$hash" ]
}

if have "$PYTHON_TAG" && have "$REDIS_TAG"; then
  echo "base images up to date ($hash)"
  exit 0
fi

mkdir -p "$CACHE"
tarball="$CACHE/bookworm-$hash.tar"
if [ ! -s "$tarball" ]; then
  command -v debootstrap >/dev/null || { echo "needs debootstrap: apt-get install -y debootstrap" >&2; exit 2; }
  root=$(mktemp -d "$CACHE/rootfs.XXXXXX")
  trap 'rm -rf "$root"' EXIT
  echo "debootstrap bookworm into $root (a few minutes)"
  debootstrap --variant=minbase --include="$PACKAGES" bookworm "$root" "$MIRROR" >"$CACHE/debootstrap.log" 2>&1 \
    || { tail -20 "$CACHE/debootstrap.log" >&2; exit 1; }
  # what python:3.11-slim offers and Debian's python3 does not: `python` and `pip` on PATH, and pip may
  # install into the system interpreter (a container is its own environment)
  ln -sf python3 "$root/usr/bin/python"
  ln -sf pip3 "$root/usr/bin/pip"
  rm -f "$root"/usr/lib/python3.*/EXTERNALLY-MANAGED
  # the host's CA bundle, so pip inside a build trusts what the host trusts (some networks re-sign TLS)
  cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
  # no Redis service is started by the image itself, and no package caches are kept
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
  mkdir -p "$root/data"
  tar -C "$root" --numeric-owner -cf "$tarball.part" .
  mv "$tarball.part" "$tarball"
fi

"$ENGINE" import --quiet \
  --change "LABEL $label" --change "ENV LANG=C.UTF-8" --change 'CMD ["python3"]' \
  "$tarball" "$PYTHON_TAG" >/dev/null
"$ENGINE" import --quiet \
  --change "LABEL $label" --change "WORKDIR /data" --change 'CMD ["redis-server"]' \
  "$tarball" "$REDIS_TAG" >/dev/null
echo "base images built ($hash): $PYTHON_TAG $REDIS_TAG"
