#!/usr/bin/env bash
# Builds the local stack's container images without Docker (test/images: ferry-datamover and
# ferry-plugins from the same definitions as deploy/Dockerfile.*, the busybox test app, pause)
# into $FERRY_CACHE_DIR/images, keyed by content. Cold, the Debian root filesystem of
# ferry-datamover (mmdebstrap) takes minutes; warm, a run takes seconds.
#
#   hack/build-images.sh                       build (or find cached) every image
#   hack/build-images.sh --push 127.0.0.1:5000 and push them to a plain-HTTP registry
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
exec go run ./test/images/cmd/build-images "$@"
