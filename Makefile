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
# The commit and its date, for `switchboard version`. The date is the
# commit's, not the build's: rebuilding a commit gives the same binary.
COMMIT ?= $(shell git rev-parse --short=12 HEAD 2>/dev/null)
DATE ?= $(shell TZ=UTC git show -s --format=%cd --date=format-local:%Y-%m-%dT%H:%M:%SZ HEAD 2>/dev/null)
LDFLAGS = -X main.version=$(VERSION) -X main.commit=$(COMMIT) -X main.date=$(DATE)
comma := ,
# make release: where the archives go, and for which platforms.
RELEASE_DIR ?= dist
RELEASE_PLATFORMS ?= linux/amd64 linux/arm64 darwin/amd64 darwin/arm64
# make cross: every package (with tests, for vet) must build for these.
CROSS_PLATFORMS ?= linux/arm64 darwin/arm64 windows/amd64
# How long each Go benchmark runs under `make bench`.
BENCHTIME ?= 1s
# Extra flags for `make run`, e.g. make run ARGS='--listen :9090 --compression'.
ARGS ?=

.PHONY: all test vet fmt-check lint cross release-check node-deps unit js browser build release run fuzz bench clean

all: test

## test: vet, gofmt check, staticcheck, the cross-build and the release
## build, every Go test with the race detector (real sockets, Redis, NATS,
## nginx, Python), the JavaScript SDK's tests (unit, against the real
## server, in headless Chromium), and the demo and dashboard in headless
## Chromium
test: vet fmt-check lint cross release-check node-deps unit js browser

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
## cross: go build and go vet of every package for CROSS_PLATFORMS
# With the flags of make release, so that the two share the build cache.
cross:
	@for p in $(CROSS_PLATFORMS); do \
		echo "== $$p"; \
		CGO_ENABLED=0 GOOS=$${p%/*} GOARCH=$${p#*/} $(GO) build -trimpath ./... && \
		CGO_ENABLED=0 GOOS=$${p%/*} GOARCH=$${p#*/} $(GO) vet -trimpath ./... && \
		CGO_ENABLED=0 GOOS=$${p%/*} GOARCH=$${p#*/} $(GO) vet -trimpath -tags bench ./cmd/switchboard/ || exit 1; \
	done

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
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/switchboard ./cmd/switchboard
	$(GO) build -tags bench -ldflags "$(LDFLAGS)" -o bin/switchboard-bench ./cmd/switchboard

## release: RELEASE_DIR (dist/) with switchboard_V_OS_ARCH.tar.gz for
## RELEASE_PLATFORMS, the npm tarball of clients/js and SHA256SUMS; V is
## VERSION without its "v". See docs/releasing.md.
# A tag vX.Y.Z must match clients/js/package.json's version (the Go module
# and the npm package move together). GNU tar: sorted, owned by root, dated
# by the commit, so that an archive's checksum depends only on its content.
release: node-deps
	@v='$(VERSION)'; npmv="$$(node -p 'require("./clients/js/package.json").version')"; \
	if echo "$$v" | grep -Eq '^v[0-9]+\.[0-9]+\.[0-9]+$$' && [ "$$v" != "v$$npmv" ]; then \
		echo "release: VERSION $$v but clients/js/package.json has $$npmv; they must match" >&2; exit 1; \
	fi
	rm -rf $(RELEASE_DIR) && mkdir -p $(RELEASE_DIR)
	@set -e; v='$(patsubst v%,%,$(VERSION))'; mtime="$$(git show -s --format=%ct HEAD 2>/dev/null || echo 0)"; \
	for p in $(RELEASE_PLATFORMS); do \
		name=switchboard_$${v}_$${p%/*}_$${p#*/}; \
		echo "== $$name"; \
		mkdir -p $(RELEASE_DIR)/$$name; \
		CGO_ENABLED=0 GOOS=$${p%/*} GOARCH=$${p#*/} $(GO) build -trimpath -ldflags "-s -w $(LDFLAGS)" \
			-o $(RELEASE_DIR)/$$name/switchboard ./cmd/switchboard; \
		cp LICENSE README.md CHANGELOG.md $(RELEASE_DIR)/$$name/; \
		tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@$$mtime -C $(RELEASE_DIR) -cf - $$name \
			| gzip -n > $(RELEASE_DIR)/$$name.tar.gz; \
		rm -r $(RELEASE_DIR)/$$name; \
	done
	cd clients/js && npm run build && npm pack --silent --pack-destination $(abspath $(RELEASE_DIR))
	cd $(RELEASE_DIR) && sha256sum *.tar.gz *.tgz > SHA256SUMS
	@cat $(RELEASE_DIR)/SHA256SUMS

## release-check: make release into a temporary directory, then check the
## checksums, the files and the `version` of this platform's binary
release-check:
	@set -e; dir="$$(mktemp -d)"; trap 'rm -rf "$$dir"' EXIT; \
	host="$$($(GO) env GOOS)_$$($(GO) env GOARCH)"; \
	$(MAKE) --no-print-directory release RELEASE_DIR="$$dir/dist"; \
	cd "$$dir/dist"; sha256sum --quiet -c SHA256SUMS; \
	v='$(patsubst v%,%,$(VERSION))'; \
	for p in $(RELEASE_PLATFORMS); do \
		grep -q " switchboard_$${v}_$${p%/*}_$${p#*/}.tar.gz\$$" SHA256SUMS || { echo "release-check: no archive for $$p" >&2; exit 1; }; \
	done; \
	[ "$$(grep -c '\.tgz$$' SHA256SUMS)" = 1 ] || { echo "release-check: want one npm tarball" >&2; exit 1; }; \
	tar -xzf switchboard_$${v}_$$host.tar.gz; \
	out="$$(./switchboard_$${v}_$$host/switchboard version)"; echo "$$out"; \
	want="switchboard $(VERSION) ($(if $(COMMIT),commit $(COMMIT)$(comma) $(DATE); )go"; \
	case "$$out" in "$$want"*" $${host%_*}/$${host#*_})") ;; \
		*) echo "release-check: version printed \"$$out\", want \"$$want... $${host%_*}/$${host#*_})\"" >&2; exit 1;; esac; \
	echo "release-check: ok"

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
	rm -rf bin $(RELEASE_DIR)
