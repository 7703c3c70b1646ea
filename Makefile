# ttm: `make demo` runs the end-to-end demo, `make test` the whole suite.
# Both install missing system packages first (scripts/deps.sh, as root).
CARGO ?= cargo

.PHONY: deps build demo test lint package bench

deps:
	scripts/deps.sh

build: deps
	$(CARGO) build --workspace

demo: build
	scripts/demo.sh

lint: deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

test: build lint
	$(CARGO) test --workspace

# .deb and .rpm in target/packages/, built against glibc 2.17 (scripts/package.sh)
package: deps
	scripts/package.sh

# One table: conn/s, nginx req/s, BPF ns per connection, syscalls and memory
# per connection, each mode against no ttm in the same run (BENCHMARKS.md).
# QUICK=1 for a ~2 minute smoke run.
bench: deps
	scripts/bench.sh
