#!/usr/bin/env bash
# Builds the third-party programs of the local test stack from the Go module proxy, each from
# its own small module under test/tools (so ferry's go.mod stays what ferry imports), into
# $FERRY_CACHE_DIR/bin. A binary is rebuilt only when its key changes: the tool's version, the
# checksum of its tools module, and the Go version. Go's build cache makes a rebuild after a
# fresh clone a link step, not a compile.
#
#   hack/build-tools.sh            build whatever is missing
#   hack/build-tools.sh --print    print the bin dir
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cache=${FERRY_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ferry}
bin=$cache/bin
mkdir -p "$bin"
if [[ ${1:-} == --print ]]; then
  echo "$bin"
  exit 0
fi

gover=$(go env GOVERSION)

# build NAME MODULE_DIR PACKAGE VERSION [LDFLAGS]
build() {
  local name=$1 dir=$root/test/tools/$2 pkg=$3 version=$4 ldflags=${5:-}
  local key
  key=$(cat "$dir/go.mod" "$dir/go.sum" <(echo "$version $gover $ldflags") | sha256sum | cut -c1-12)
  local out=$bin/.$name-$version-$key
  if [[ ! -x $out ]]; then
    echo "build-tools: building $name $version (cached afterwards)" >&2
    local start=$SECONDS
    (cd "$dir" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w $ldflags" -o "$out.tmp" "$pkg")
    mv "$out.tmp" "$out"
    echo "build-tools: $name built in $((SECONDS - start))s" >&2
  fi
  ln -sfn "$(basename "$out")" "$bin/$name"
}

kv=k8s.io/component-base/version
kube_ldflags="-X $kv.gitVersion=v1.33.13 -X $kv.gitMajor=1 -X $kv.gitMinor=33 -X $kv.gitTreeState=clean"
# Two lanes side by side: the Kubernetes programs share most packages (each build after the
# first reuses them from Go's build cache), and so do the Velero ones; the lanes share little,
# so running them at once fills what one build leaves idle (module downloads, links, the last
# packages of a chain). A cold build of all takes about 18 min one after another on 2 cores.
kube_lane() {
  build kube-apiserver kube ./kube-apiserver v1.33.13 "$kube_ldflags"
  build kube-controller-manager kube ./kube-controller-manager v1.33.13 "$kube_ldflags"
  build kubectl kube ./kubectl v1.33.13 "$kube_ldflags"
  # a real node per cluster: kubelet, kube-proxy and the scheduler that binds pods to it
  build kube-scheduler kube ./kube-scheduler v1.33.13 "$kube_ldflags"
  build kube-proxy kube ./kube-proxy v1.33.13 "$kube_ldflags"
  build kubelet kube ./kubelet v1.33.13 "$kube_ldflags"
  build versitygw versitygw github.com/versity/versitygw/cmd/versitygw v1.8.0
}
velero_lane() {
  build velero velero ./velero v1.18.3 "-X github.com/vmware-tanzu/velero/pkg/buildinfo.Version=v1.18.3"
  # an older Velero with v2 item actions, for the compatibility run (stack.Options.VeleroVersion)
  build velero-v1.14.0 velero114 ./velero v1.14.0 "-X github.com/vmware-tanzu/velero/pkg/buildinfo.Version=v1.14.0"
  build velero-plugin-for-aws velero github.com/vmware-tanzu/velero-plugin-for-aws/velero-plugin-for-aws v1.14.3
}
kube_lane &
kube=$!
velero_lane &
velero=$!
status=0
wait "$kube" || status=$?
wait "$velero" || status=$?
exit "$status"
