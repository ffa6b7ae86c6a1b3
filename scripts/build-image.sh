#!/usr/bin/env bash
# Build an OCI image archive (OCI image layout in a tar) from the busybox rootfs.
#
# Usage: scripts/build-image.sh OUT.tar [ROOTFS]
#
# ROOTFS defaults to build/rootfs (built with scripts/build-rootfs.sh if missing).
# The archive imports with `ctr image import --all-platforms OUT.tar` under the name
# docker.io/library/sibling-busybox:latest. No registry and no image tool is needed:
# the layout is a handful of JSON files and one uncompressed layer, written here.
# Output is reproducible: same busybox in, same digests out.
set -euo pipefail

IMAGE_NAME=${IMAGE_NAME:-docker.io/library/sibling-busybox:latest}
IMAGE_TAG=${IMAGE_NAME##*:}
# The image's default command, as a JSON array (the CRI test's pod sandbox image sleeps).
IMAGE_CMD=${IMAGE_CMD:-'["/bin/sh"]'}

die() { echo "build-image: $*" >&2; exit 1; }

if [ $# -lt 1 ] || [ $# -gt 2 ]; then die "usage: $0 OUT.tar [ROOTFS]"; fi
out=$1
repo=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
rootfs=${2:-$repo/build/rootfs}

if [ ! -x "$rootfs/bin/busybox" ]; then
    "$repo/scripts/build-rootfs.sh" "$rootfs"
fi

# OCI platform names, not uname's.
arch=$(dpkg --print-architecture 2>/dev/null || uname -m)
case "$arch" in
    x86_64) arch=amd64 ;;
    aarch64) arch=arm64 ;;
esac

work=$(mktemp -d "${TMPDIR:-/tmp}/sibling-image.XXXXXX")
trap 'rm -rf -- "$work"' EXIT
blobs=$work/layout/blobs/sha256
mkdir -p "$blobs"

# Deterministic tar: fixed order, owner and mtime, so digests only change when
# the content does.
det_tar() {
    tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 --format=gnu "$@"
}

digest_of() { sha256sum "$1" | cut -d' ' -f1; }
size_of() { stat -c %s "$1"; }

# Store a file as a blob and print "DIGEST SIZE".
add_blob() {
    local file=$1 d
    d=$(digest_of "$file")
    mv -- "$file" "$blobs/$d"
    echo "$d $(size_of "$blobs/$d")"
}

# Layer: uncompressed, so its digest is also its diff_id.
det_tar -C "$rootfs" -cf "$work/layer.tar" .
read -r layer_digest layer_size < <(add_blob "$work/layer.tar")

cat >"$work/config.json" <<JSON
{"architecture":"$arch","os":"linux","config":{"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"Cmd":$IMAGE_CMD,"WorkingDir":"/"},"rootfs":{"type":"layers","diff_ids":["sha256:$layer_digest"]},"history":[{"created_by":"scripts/build-image.sh (busybox-static)"}]}
JSON
read -r config_digest config_size < <(add_blob "$work/config.json")

cat >"$work/manifest.json" <<JSON
{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:$config_digest","size":$config_size},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:$layer_digest","size":$layer_size}]}
JSON
read -r manifest_digest manifest_size < <(add_blob "$work/manifest.json")

cat >"$work/layout/index.json" <<JSON
{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:$manifest_digest","size":$manifest_size,"platform":{"architecture":"$arch","os":"linux"},"annotations":{"io.containerd.image.name":"$IMAGE_NAME","org.opencontainers.image.ref.name":"$IMAGE_TAG"}}]}
JSON
echo '{"imageLayoutVersion":"1.0.0"}' >"$work/layout/oci-layout"

mkdir -p -- "$(dirname -- "$out")"
det_tar -C "$work/layout" -cf "$out.tmp" oci-layout index.json blobs
mv -- "$out.tmp" "$out"
echo "build-image: $out ($IMAGE_NAME, manifest sha256:$manifest_digest)"
