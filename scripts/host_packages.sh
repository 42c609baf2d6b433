#!/usr/bin/env bash
# Debian packages the image and cluster checks need on the host (as root; each installed only if missing):
# buildah and podman with runc (crun fails on hosts with hybrid cgroups), debootstrap for a local base image,
# etcd-server for the test cluster's store. Go builds the rest (scripts/cluster.sh).
set -euo pipefail
needed=()
for pair in buildah:buildah podman:podman runc:runc debootstrap:debootstrap etcd:etcd-server; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || needed+=("${pair#*:}")
done
if [ ${#needed[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "host_packages: missing ${needed[*]}; install them as root (apt-get install ${needed[*]})" >&2
    exit 1
  fi
  echo "host_packages: installing ${needed[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${needed[@]}" uidmap >/dev/null
fi
