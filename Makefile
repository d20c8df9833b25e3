# Switchboard developer targets. `make test` is the one command that runs
# every check; .ci/run runs exactly it.

GO ?= go
# A fresh Debian machine has Go in /usr/local/go/bin but not on PATH.
export PATH := $(PATH):/usr/local/go/bin

# staticcheck is run from its module at a pinned version (no tools.go, no
# go.mod entry); v0.8.2 supports Go 1.26.
STATICCHECK_VERSION ?= v0.8.2
# How long each fuzz target runs under `make fuzz`.
FUZZTIME ?= 10s
# Bounds `go test -race`; well inside CI's 30 minutes (a full run took
# about 2.5 minutes on the 2-core development machine).
TEST_TIMEOUT ?= 15m
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
# How long each Go benchmark runs under `make bench`.
BENCHTIME ?= 1s
# Extra flags for `make run`, e.g. make run ARGS='--listen :9090 --compression'.
ARGS ?=

.PHONY: all test vet fmt-check lint node-deps unit js browser build run fuzz bench clean

all: test

## test: vet, gofmt check, staticcheck, every Go test with the race detector
## (real sockets, Redis, NATS, nginx, Python), the JavaScript SDK's tests
## (unit, against the real server, in headless Chromium), and the demo and
## dashboard in headless Chromium
test: vet fmt-check lint node-deps unit js browser

vet:
	$(GO) vet ./...
	$(GO) vet -tags bench ./cmd/switchboard/

fmt-check:
	@out="$$(gofmt -l .)"; \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi

lint:
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) -tags bench ./cmd/switchboard/

# The Node packages the Go tests use too: the SDK bundle embedded in the
# demo (a test checks it is fresh), the Node example, the browser tests.
NODE_DIRS = clients/js examples/node-client e2e/browser
node-deps:
	@for d in $(NODE_DIRS); do \
		[ -d $$d/node_modules ] || (cd $$d && npm ci --no-audit --no-fund) || exit 1; \
	done
	@# The Node example imports the SDK's build output (dist/).
	cd clients/js && npm run build

unit: node-deps
	$(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) ./...
	@# The load tool's command is the -tags bench build (cmd/switchboard/bench.go).
	$(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) -tags bench ./cmd/switchboard/

js: node-deps
	cd clients/js && npm test

browser: node-deps
	cd e2e/browser && npm test

## build: bin/switchboard, and bin/switchboard-bench (the same command with
## the load tool, -tags bench), which `switchboard bench` runs
build:
	$(GO) build -ldflags "-X main.version=$(VERSION)" -o bin/switchboard ./cmd/switchboard
	$(GO) build -tags bench -ldflags "-X main.version=$(VERSION)" -o bin/switchboard-bench ./cmd/switchboard

## run: a node on :8080 with the demo page at http://localhost:8080
run:
	$(GO) run ./cmd/switchboard serve $(ARGS)

## fuzz: every Fuzz target in the module, FUZZTIME each
# `go test -list` prints a package's matching names, then its "ok <pkg>" line.
fuzz:
	@list="$$($(GO) test -list '^Fuzz' ./...)" || { echo "$$list"; exit 1; }; \
	targets="$$(echo "$$list" | awk '/^Fuzz/ { n = n " " $$1; next } /^ok/ { split(n, a, " "); for (i in a) print $$2 " " a[i] } { n = "" }')"; \
	if [ -z "$$targets" ]; then echo "no fuzz targets"; exit 0; fi; \
	echo "$$targets" | while read -r pkg name; do \
		echo "== $$name ($$pkg, $(FUZZTIME))"; \
		$(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) "$$pkg" || exit 1; \
	done

## bench: the load scenarios against real servers (the floor, 1,000 and
## 10,000 subscribers fanning out, 19,000 idle; about 2-3 minutes), then
## the Go benchmarks of protocol, hub and the memory engine. Results and
## how to read them: docs/benchmarks.md
bench: build
	@status=0; \
	bin/switchboard bench suite || status=1; \
	$(GO) test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) ./protocol/ ./hub/ ./transport/ ./engine/memory/ || status=1; \
	exit $$status

clean:
	rm -rf bin
