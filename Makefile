# rcluster — make targets. `make run` and `make test` do all the set-up a
# fresh Debian machine needs (Go itself must be installed).
SHELL := /bin/bash
GO ?= go
BIN := bin/rcluster
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
IMAGE ?= rcluster-redis:local
export TESTCONTAINERS_RYUK_DISABLED := true

.PHONY: all deps build run test unit integration e2e bench image clean

all: build

## deps: install redis-server/redis-tools (Debian packages) when missing, and Go modules
deps:
	@if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then \
		echo "installing redis-server and redis-tools"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq redis-server redis-tools >/dev/null; \
	fi
	@redis-server --version
	$(GO) mod download

## build: the rcluster binary in bin/
build:
	$(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/rcluster

## run: install deps, build, bring up the default cluster and verify it (left running)
run: deps build
	./$(BIN) up
	./$(BIN) verify
	@echo
	@echo "The cluster is running: ./$(BIN) status | redis-cli -c -p 7001"
	@echo "Stop it with: ./$(BIN) down   (add --purge to delete its data)"

## cross: build and vet every package, tests included, for macOS (Intel and Apple silicon)
.PHONY: cross
cross:
	@for arch in amd64 arm64; do \
		echo "darwin/$$arch: go build ./... && go vet ./..."; \
		CGO_ENABLED=0 GOOS=darwin GOARCH=$$arch $(GO) build ./... && \
		CGO_ENABLED=0 GOOS=darwin GOARCH=$$arch $(GO) vet ./... || exit 1; \
	done

## test: unit + integration + e2e (needs redis-server; e2e needs Docker)
test: deps cross
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 40m ./...

## unit: fast tests only, no redis-server needed
unit:
	$(GO) test -short -count=1 ./...

## integration: tests against real redis-server processes (no e2e)
integration: deps
	$(GO) test -count=1 $$($(GO) list ./... | grep -v /e2e)

## e2e: drive the built binary and containers
e2e: deps image
	$(GO) test -count=1 -timeout 30m ./e2e/...

## image: build $(IMAGE) offline from Debian's redis-server (no registry needed)
image:
	IMAGE=$(IMAGE) scripts/build-image.sh

## bench: bootstrap time of rcluster vs the redis-cli path, failover/kill/reset vs the hand way, and Go benchmarks
bench: deps build
	$(GO) test -run '^$$' -bench . -benchmem ./internal/...
	$(GO) run ./bench/cmd/clusterbench -rcluster ./$(BIN) $(BENCHFLAGS)
	$(GO) run ./bench/cmd/opsbench -rcluster ./$(BIN) $(OPSBENCHFLAGS)

## clean: remove build output (never a cluster's data: use `rcluster down --purge`)
clean:
	rm -rf bin
