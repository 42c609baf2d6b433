#!/usr/bin/env bash
# Build the two images (docker/service.Dockerfile, docker/worker.Dockerfile) with Debian's buildah, on a machine
# with no Docker daemon. Tags: localhost/padellm-ner/{service,worker}:VERSION (the chart's appVersion); push them
# with `buildah push` to the registry the chart's image.registry names.
#
#   scripts/images.sh base     a local Debian bookworm base with Python 3.11 (debootstrap, imported with podman)
#   scripts/images.sh build    both images; BASE=IMAGE picks the base (default: the official python image;
#                              BASE=local: the one `base` makes, for machines that cannot pull images)
#
# Where package traffic goes through a TLS-intercepting proxy, the host's CA bundle is mounted into the build
# and named to pip and uv; the host's uv cache is mounted too, so locked wheels (torch) are not fetched again.
# runc, not crun (crun fails on hosts with hybrid cgroups); rlimits are left as the host has them.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' charts/padellm-ner/Chart.yaml)
LOCAL_BASE=localhost/padellm-ner/debian-python:bookworm
CACHE=.cache/images
CA_BUNDLE=${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
UV_CACHE=${UV_CACHE:-$HOME/.cache/uv}
ULIMITS=(--ulimit nofile=1024:1024 --ulimit nproc=4096:4096)

base() {
  if podman image exists "$LOCAL_BASE"; then return; fi
  mkdir -p "$CACHE"
  if [ ! -x "$CACHE/rootfs/usr/bin/python3" ]; then
    rm -rf "$CACHE/rootfs"
    echo "images: debootstrap bookworm with python3 into $CACHE/rootfs" >&2
    debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
      bookworm "$CACHE/rootfs" http://deb.debian.org/debian >"$CACHE/debootstrap.log" 2>&1
  fi
  tar -C "$CACHE/rootfs" -c . | podman --runtime runc import - "$LOCAL_BASE" >/dev/null
  echo "images: $LOCAL_BASE" >&2
}

build() {
  local base_image=${BASE:-python:3.11.7-slim-bookworm}
  if [ "$base_image" = local ]; then base; base_image=$LOCAL_BASE; fi
  mkdir -p "$UV_CACHE" "$CACHE"
  for name in service worker; do
    echo "images: building localhost/padellm-ner/$name:$VERSION from $base_image" >&2
    # no --layers: only the final image is committed (a worker image is about 7 GB with CUDA torch)
    buildah bud --runtime runc --network host "${ULIMITS[@]}" \
      --build-arg BASE="$base_image" \
      --build-arg SSL_CERT_FILE=/etc/ssl/certs/host-ca.crt --build-arg PIP_CERT=/etc/ssl/certs/host-ca.crt \
      -v "$CA_BUNDLE:/etc/ssl/certs/host-ca.crt:ro" -v "$UV_CACHE:/root/.cache/uv" \
      -f "docker/$name.Dockerfile" -t "localhost/padellm-ner/$name:$VERSION" . >"$CACHE/build-$name.log" 2>&1 \
      || { tail -n 40 "$CACHE/build-$name.log" >&2; return 1; }
  done
  # the images these replaced, untagged now, would fill the disk build after build
  podman image prune -f >/dev/null
  podman images --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep "padellm-ner/" >&2
}

case "${1:-build}" in
  base) base ;;
  build) build ;;
  *) echo "usage: $0 base|build" >&2; exit 2 ;;
esac
