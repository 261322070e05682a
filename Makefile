# TCS — the tenant context service.
#
#   make run     run the system on this machine (embedded backends, data in ./data)
#   make test    everything CI checks: formatting, vet, staticcheck, the proto
#                drift check, and every test with -race
#   make bench   benchmarks (speed and memory targets live here, not in tests)
#   make fuzz    run each fuzzer for FUZZTIME (default 30s)
#   make proto   regenerate the Go code of proto/ (needs protoc 3.21.12)

GO        ?= go
DATA      ?= data
FUZZTIME  ?= 30s
BENCHTIME ?= 1s

# Development tokens for `make run`; set your own in the environment.
export TCS_ADMIN_TOKEN  ?= dev-admin-token
export TCS_READER_TOKEN ?= dev-reader-token

.DEFAULT_GOAL := help
include Makefile.proto

.PHONY: emulators help run build test lint fmt-check vet staticcheck unit proto-check-if-possible bench fuzz clean

help:
	@sed -n 's/^#   //p' Makefile

run:
	$(GO) run ./cmd/tcs-dev --data $(DATA)

build:
	$(GO) build ./...

test: fmt-check vet staticcheck proto-check-if-possible unit

unit: emulators
	$(GO) test -race -count=1 -timeout 15m ./...

lint: fmt-check vet staticcheck

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

staticcheck:
	$(GO) tool staticcheck ./...

# The proto drift check needs Debian's protoc; .ci/run installs it and sets
# REQUIRE_PROTO_CHECK=1 so that CI never skips it.
proto-check-if-possible:
	@if command -v protoc >/dev/null 2>&1 || [ -n "$$REQUIRE_PROTO_CHECK" ]; then \
		$(MAKE) --no-print-directory proto-check; \
	else \
		echo "note: protoc is not installed, so the proto drift check was not run (.ci/run installs it: apt-get install protobuf-compiler libprotobuf-dev)"; \
	fi

bench:
	$(GO) test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) ./...

# Each fuzz target in turn (go test -fuzz takes one target per run).
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
		for target in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
			echo "== $$pkg $$target"; \
			$(GO) test -run '^$$' -fuzz "^$$target$$" -fuzztime $(FUZZTIME) $$pkg; \
		done; \
	done

# AWS emulators the backend tests start (idempotent; needs node/npm and java).
emulators:
	infra/emulators/install.sh

clean:
	rm -rf .bin
