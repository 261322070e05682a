# TCS — the tenant context service.
#
#   make run     run the system on this machine (embedded backends, data in ./data)
#   make test    everything CI checks: formatting, vet, staticcheck, the proto
#                drift check, every test with -race, then bench-smoke
#   make test-short   the quick loop: go test -short ./... (no emulators, e2e,
#                chaos or binary builds; 50-55 s on two idle cores)
#   make bench   benchmarks (speed and memory targets live here, not in tests)
#   make bench-smoke   every benchmark once with small fixtures (-short), so
#                that none rots unseen; its figures mean nothing (part of make test)
#   make fuzz    run each fuzzer for FUZZTIME (default 30s)
#   make proto   regenerate the Go code of proto/ (needs protoc 3.21.12)
#   make run-aws-local   the AWS topology on local emulators, one process per binary
#   make chaos   the chaos suite's full variant (the short one is part of make test);
#                report in .bin/chaos/full-<time>/ (docs/chaos.md)
#   make compose-check   validate docker-compose.yml (needs Debian docker-compose)

GO        ?= go
DATA      ?= data
FUZZTIME  ?= 30s
BENCHTIME ?= 1s
# BenchmarkResyncAll's size: issue 6's target is 1,000,000 tenants in ≤ 120 s.
export TCSCTL_BENCH_TENANTS ?= 1000000

# Development tokens for `make run` (accepted on loopback addresses only);
# set your own in the environment, or use a credentials file (README "Security").
export TCS_ADMIN_TOKEN  ?= dev-admin-token
export TCS_READER_TOKEN ?= dev-reader-token
export TCS_LOOKUP_TOKEN ?= dev-lookup-token
export TCS_SCAN_TOKEN   ?= dev-scan-token

.DEFAULT_GOAL := help
include Makefile.proto

.PHONY: emulators help run run-aws-local chaos build test test-short lint fmt-check vet staticcheck unit proto-check-if-possible compose-check compose-check-if-possible bench bench-smoke fuzz clean

help:
	@sed -n 's/^#   //p' Makefile

run:
	$(GO) run ./cmd/tcs-dev --data $(DATA) --reflection

build:
	$(GO) build ./...

test: fmt-check vet staticcheck proto-check-if-possible compose-check-if-possible unit
	$(MAKE) --no-print-directory bench-smoke

# One set of emulators for every test binary: cmd/emulators starts them,
# runs go test with TCS_EMULATORS naming them, and stops them when it exits,
# whatever the outcome (infra/emulators). The chaos suite's short variant runs
# last and alone (without -race), on emulators of its own: its bounds
# (availability, convergence time) are about the system, not about the test
# binaries competing for two cores.
unit: emulators
	TCS_CHAOS=later $(GO) run ./infra/emulators/cmd/emulators -- $(GO) test -race -count=1 -timeout 15m ./...
	$(GO) test -count=1 -v -run '^TestChaos$$' -timeout 20m ./infra/chaos

# Skips every test that needs the AWS emulators (the harness skips them
# under -short), the e2e tests, the chaos suite and the builds of binaries.
test-short:
	$(GO) test -short -count=1 ./...

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

compose-check:
	docker-compose -f docker-compose.yml config -q

# Like proto-check-if-possible: CI installs docker-compose and sets
# REQUIRE_COMPOSE_CHECK=1.
compose-check-if-possible:
	@if command -v docker-compose >/dev/null 2>&1 || [ -n "$$REQUIRE_COMPOSE_CHECK" ]; then \
		$(MAKE) --no-print-directory compose-check; \
	else \
		echo "note: docker-compose is not installed, so docker-compose.yml was not validated (.ci/run installs it: apt-get install --no-install-recommends docker-compose)"; \
	fi

run-aws-local: emulators
	infra/run-aws-local.sh

# The chaos suite (infra/chaos, docs/chaos.md), full variant: issue 17's fault
# windows (SNS/SQS frozen 60 s), about 7 minutes. The short variant runs in
# make test (unit, above). Set
# TCS_CHAOS_REPORT to choose the report folder, TCS_CHAOS_THRESHOLDS to try
# other bounds.
chaos: emulators
	TCS_CHAOS=full $(GO) test -count=1 -v -run '^TestChaos$$' -timeout 60m ./infra/chaos

# Benchmarks need the emulators (AWS backends) and redis-server (the client
# cache's and tcs-sidecar's comparisons); bench-deps.sh installs redis-server if it is missing.
bench: emulators
	tcs/client/bench-deps.sh
	$(GO) test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) ./...

# Every benchmark once (-benchtime 1x) under -short, where each picks small
# fixtures (internal/benchsize): a benchmark that no longer runs fails here,
# not months later in make bench. The figures mean nothing. Emulators and
# redis-server as for bench; TCSCTL_BENCH_TENANTS is cleared so that
# BenchmarkResyncAll takes its -short default.
bench-smoke: emulators
	tcs/client/bench-deps.sh
	TCSCTL_BENCH_TENANTS= $(GO) run ./infra/emulators/cmd/emulators -- $(GO) test -short -run '^$$' -bench . -benchtime 1x -timeout 15m ./...

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
