#!/usr/bin/env bash
# `make bench`: every benchmark part in turn; each prints its own tables (Markdown) on stdout and
# its progress on stderr. A part is a program or a Go benchmark under test/bench/<part>/: add a
# case below for a new one. FERRY_BENCH_PARTS picks parts (default: all), e.g.
#   FERRY_BENCH_PARTS=dataplane make bench
set -euo pipefail
cd "$(dirname "$0")/.."

: "${FERRY_BIN_DIR:=$PWD/_output/bin}"
export FERRY_BIN_DIR
parts=(${FERRY_BENCH_PARTS:-dataplane images stack})

for part in "${parts[@]}"; do
  echo "=== bench: $part" >&2
  case $part in
    dataplane)
      # ferry send/serve vs tar | tar, rsync, rsync via stunnel, restic; re-stage; cores; block;
      # memory. Also writes its tables into docs/benchmarks.md and its chart, docs/benchmarks.svg.
      go run ./test/bench/dataplane -bin "$FERRY_BIN_DIR/ferry-datamover" ;;
    images)
      # ferry's image copy vs skopeo.
      go test -run '^$' -bench . -benchtime 1x -timeout 30m ./test/bench/images/ ;;
    stack)
      # Velero backup + restore with and without ferry's plugins.
      go test -run '^$' -bench . -benchtime 1x -timeout 60m ./test/bench/stack/ ;;
    *)
      echo "bench: unknown part $part" >&2
      exit 2 ;;
  esac
done
