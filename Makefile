# ferry — build, test and run everything locally. `make test` is what CI runs (.ci/run).
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c

GO ?= go
# go.podman.io/image: pure-Go OpenPGP instead of gpgme (no cgo, no libgpgme headers needed).
GOTAGS ?= containers_image_openpgp
export GOFLAGS := -tags=$(GOTAGS) $(GOFLAGS)

# Third-party binaries of the local stack (kube-apiserver, velero, …), keyed by version.
export FERRY_CACHE_DIR ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/ferry
# ferry's own binaries.
export FERRY_BIN_DIR ?= $(CURDIR)/_output/bin

VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X github.com/ferry-dev/ferry/internal/version.Version=$(VERSION)

E2E_TIMEOUT ?= 40m

.PHONY: all
all: build

.PHONY: build
build: ## Build ferry-plugins and ferry-datamover into _output/bin
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(FERRY_BIN_DIR)/ ./cmd/ferry-plugins ./cmd/ferry-datamover

.PHONY: deps
deps: ## Install the Debian packages the tests use (rsync, stunnel4, etcd, docker-registry, …)
	hack/install-deps.sh

.PHONY: tools
tools: deps ## Build the third-party stack programs (kube-apiserver, velero, …) into the cache
	hack/build-tools.sh

.PHONY: images
images: deps build ## Build the stack's container images (datamover, plugins, test app, pause) into the cache
	hack/build-images.sh

.PHONY: vet
vet:
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo 'gofmt needed'; exit 1; }

# The suites run side by side: the end-to-end ones mostly wait on their clusters, and the unit
# tests fit in those waits (on 2 cores a warm run takes the e2e suite's time, not the sum).
# --output-sync prints each suite's output whole when it ends.
.PHONY: test
test: deps tools build vet ## Everything: unit, contract, data plane, e2e, the stack's real nodes
	$(MAKE) --no-print-directory -j3 --output-sync=target test-unit test-e2e test-stack

.PHONY: test-unit
test-unit: ## Unit, contract and data-plane tests (real rsync/stunnel/registries; no cluster)
	$(GO) test -count=1 -timeout 20m ./...

# E2E_FLAGS: extra `go test` flags for test-e2e, e.g. E2E_FLAGS="-run 'TestDemo|TestRestrictedMigrationOnRealNodes'".
# A failed run ends with a summary of its failures (hack/test-summary.sh); the whole log is _output/e2e.log.
E2E_FLAGS ?=
# The parallel e2e tests mostly wait on their clusters, so more of them run at once than there are
# cores (go test's default -parallel is GOMAXPROCS: 2 here); since every stack runs real nodes,
# six at once overloaded 2 cores (probes and API calls timed out), so four.
E2E_PARALLEL ?= 4

.PHONY: test-e2e
test-e2e: deps tools build ## End-to-end tests on the local two-cluster stack (as root)
	@mkdir -p _output
	@status=0; $(GO) test -count=1 -tags=$(GOTAGS),e2e -timeout $(E2E_TIMEOUT) -parallel $(E2E_PARALLEL) -v $(E2E_FLAGS) ./test/e2e/ 2>&1 \
		| tee _output/e2e.log || status=$$?; \
	if [ $$status -ne 0 ]; then hack/test-summary.sh _output/e2e.log; fi; exit $$status

# The stack's own end-to-end tests (real nodes: kubelet, containerd, kube-proxy, the images built
# here; teardown and cleanup after a killed stack). The first run builds the images (minutes, cached).
.PHONY: test-stack
test-stack: deps tools build ## Real-nodes tests of the local stack (as root)
	$(GO) test -count=1 -tags=$(GOTAGS),e2e -timeout 30m -v ./test/stack/

.PHONY: bench
bench: deps tools build ## Benchmarks: ratios against tar|tar, rsync, restic, skopeo; stack overhead
	hack/bench.sh

# STACK_FLAGS: --kubernetes (a plain pair, no OpenShift APIs), --without-ferry (Velero alone).
STACK_FLAGS ?=

.PHONY: stack-up
stack-up: deps tools build ## Start the local two-cluster stack in the background and print its kubeconfigs
	$(GO) run ./test/stack/cmd/stack up $(STACK_FLAGS)

.PHONY: stack-down
stack-down: ## Stop the local stack and remove its state
	$(GO) run ./test/stack/cmd/stack down

.PHONY: demo
demo: deps tools build ## A whole migration on one machine, with a report
	$(GO) run ./test/demo/cmd/demo

.PHONY: clean
clean:
	rm -rf _output

.PHONY: help
help:
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'
