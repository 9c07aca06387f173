#!/usr/bin/env bash
# Installs the Debian packages ferry's tests run against (the real programs, never fakes).
# Idempotent and quick when everything is present: apt is only touched for what is missing.
set -euo pipefail

# package -> a file it installs (checked instead of asking dpkg, which is slow)
declare -A want=(
  [rsync]=/usr/bin/rsync
  [stunnel4]=/usr/bin/stunnel4
  [etcd-server]=/usr/bin/etcd
  [docker-registry]=/usr/bin/docker-registry
  [skopeo]=/usr/bin/skopeo
  [restic]=/usr/bin/restic
  [acl]=/usr/bin/setfacl
  [attr]=/usr/bin/setfattr
  [iproute2]=/usr/sbin/ip
  [util-linux]=/usr/bin/unshare
  # promtool: the unit tests of deploy/monitoring's alert rules
  [prometheus]=/usr/bin/promtool
  # the stack's real nodes: container runtime, CNI plugins, kube-proxy's tools
  [containerd]=/usr/bin/containerd
  [runc]=/usr/sbin/runc
  [containernetworking-plugins]=/usr/lib/cni/bridge
  [iptables]=/usr/sbin/iptables
  [conntrack]=/usr/sbin/conntrack
  # images built here (test/images): a Debian root filesystem for ferry-datamover, busybox for the rest
  [mmdebstrap]=/usr/bin/mmdebstrap
  [busybox-static]=/bin/busybox
  # the dashboard's browser tests: headless Chromium over the DevTools pipe, a font to render with
  [chromium]=/usr/bin/chromium
  [fonts-dejavu-core]=/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf
  # lets plain `go vet ./...` and `go test ./...` build go.podman.io/image without the
  # containers_image_openpgp tag the Makefile sets
  [libgpgme-dev]=/usr/include/gpgme.h
  [pkg-config]=/usr/bin/pkg-config
)

missing=()
for pkg in "${!want[@]}"; do
  [[ -e ${want[$pkg]} ]] || missing+=("$pkg")
done
if ((${#missing[@]} == 0)); then
  exit 0
fi

sudo=()
if [[ $(id -u) != 0 ]]; then
  sudo=(sudo -n)
fi
echo "install-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
