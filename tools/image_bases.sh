#!/usr/bin/env bash
# The two local base images of components/Dockerfile.offline, from Debian's packages only (no
# container registry): debootstrap a bookworm minbase with Python, `docker import` it as
# BASE_IMAGE, then the same tree plus gcc and libc6-dev as BUILDER_IMAGE. An image that already
# exists is kept (delete it to rebuild). Needs root (debootstrap, chroot) and a Docker engine.
#   tools/image_bases.sh [BASE_IMAGE] [BUILDER_IMAGE]      (defaults: asymsr-base:bookworm asymsr-builder:bookworm)
# ASYMSR_DEBIAN_MIRROR overrides the mirror (default http://deb.debian.org/debian).
# Each base made here is also saved (`docker save`) under ASYMSR_IMAGE_CACHE (default
# ~/.cache/asymsr/images), named by the hash of this script, and loaded from there into an engine
# that lacks it: a fresh engine (the container test starts one per run) then skips debootstrap.
# ASYMSR_IMAGE_CACHE= (empty) turns the cache off.
set -euo pipefail
BASE_IMAGE=${1:-asymsr-base:bookworm}
BUILDER_IMAGE=${2:-asymsr-builder:bookworm}
MIRROR=${ASYMSR_DEBIAN_MIRROR:-http://deb.debian.org/debian}
CACHE=${ASYMSR_IMAGE_CACHE-${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/asymsr/images}
KEY=$(sha256sum "$0" | cut -c1-12)  # a change of the recipe below makes new cache entries

exists() { docker image inspect "$1" >/dev/null 2>&1; }
cached() { echo "$CACHE/$(echo "$1" | tr ':/' '__')-$KEY.tar"; }
load() {  # from the cache into the engine, when the engine lacks it and the cache has it
    exists "$1" || { [ -n "$CACHE" ] && [ -f "$(cached "$1")" ] && docker load -q -i "$(cached "$1")" >/dev/null \
        && echo "image_bases: $1 loaded from $(cached "$1")"; } || true
}
save() {  # into the cache through a temporary name, so a killed save leaves no half tarball
    [ -n "$CACHE" ] && [ ! -f "$(cached "$1")" ] || return 0
    mkdir -p "$CACHE" && docker save -o "$(cached "$1").part" "$1" && mv "$(cached "$1").part" "$(cached "$1")" \
        || { rm -f "$(cached "$1").part"; echo "image_bases: could not cache $1 (kept in the engine)" >&2; }
}
load "$BASE_IMAGE"
load "$BUILDER_IMAGE"
if exists "$BASE_IMAGE" && exists "$BUILDER_IMAGE"; then
    echo "image_bases: $BASE_IMAGE and $BUILDER_IMAGE exist; kept"
    save "$BASE_IMAGE"  # bases made before the cache existed go into it too
    save "$BUILDER_IMAGE"
    exit 0
fi
for tool in debootstrap chroot docker; do
    command -v "$tool" >/dev/null || { echo "image_bases: '$tool' not found (apt-get install debootstrap docker.io)" >&2; exit 2; }
done
[ "$(id -u)" = 0 ] || { echo "image_bases: debootstrap needs root" >&2; exit 2; }

work=$(mktemp -d "${TMPDIR:-/tmp}/asymsr-bases.XXXXXX")
trap 'rm -rf "$work"' EXIT
started=$SECONDS
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$work/root" "$MIRROR" >"$work/debootstrap.log" \
    || { tail -20 "$work/debootstrap.log" >&2; exit 1; }
rm -rf "$work/root"/var/cache/apt/archives/*.deb "$work/root"/var/lib/apt/lists/*
echo "image_bases: debootstrap $((SECONDS - started)) s"
exists "$BASE_IMAGE" || tar -C "$work/root" -c . | docker import - "$BASE_IMAGE" >/dev/null
started=$SECONDS
# The builder: the same tree plus a C compiler for the row kernel. /proc is not needed by apt here.
chroot "$work/root" sh -c 'apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends gcc libc6-dev && apt-get clean && rm -rf /var/lib/apt/lists/*' >"$work/apt.log" \
    || { tail -20 "$work/apt.log" >&2; exit 1; }
exists "$BUILDER_IMAGE" || tar -C "$work/root" -c . | docker import - "$BUILDER_IMAGE" >/dev/null
echo "image_bases: compiler $((SECONDS - started)) s; $(docker image inspect -f '{{.Size}}' "$BASE_IMAGE") and $(docker image inspect -f '{{.Size}}' "$BUILDER_IMAGE") bytes"
save "$BASE_IMAGE"
save "$BUILDER_IMAGE"
