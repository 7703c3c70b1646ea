# ttm: `make demo` runs the end-to-end demo, `make test` the whole suite.
# Both install missing system packages first (scripts/deps.sh, as root).
CARGO ?= cargo

.PHONY: deps build demo test test-kernels lint package image bench

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
	scripts/test-kernels.sh

# The tests that touch the kernel, and the demo, on each kernel in KERNELS
# (default "host 6.1 5.10:...": this machine's, Debian 12's and 11's in VMs), then one
# table of what passed where (scripts/test-kernels.sh; docs/kernels.md).
test-kernels: deps
	scripts/test-kernels.sh

# .deb and .rpm for x86_64 and aarch64 in target/packages/, built against
# glibc 2.17 (scripts/package.sh, docs/packaging.md)
package: deps
	scripts/package.sh --arch x86_64
	scripts/package.sh --arch aarch64

# The DaemonSet's container image, with buildah (scripts/image.sh);
# IMAGE= names it, BASE= the Debian image under it (BASE=mmdebstrap: one
# built from Debian's mirror, for hosts without a container registry).
image: deps
	scripts/image.sh

# One table: conn/s, nginx req/s, BPF ns per connection, syscalls and memory
# per connection, each mode against no ttm in the same run (BENCHMARKS.md).
# QUICK=1 for a ~2 minute smoke run.
bench: deps
	scripts/bench.sh
