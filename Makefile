# containerd-shim-sibling-v2: build, test and demo entry points.
# Tests need root, containerd, ctr and busybox-static (see .ci/run for the packages).

SHELL := /bin/bash
CARGO ?= cargo
BUSYBOX ?= /bin/busybox

BUILD_DIR := $(CURDIR)/build
ROOTFS := $(BUILD_DIR)/rootfs
IMAGE_TAR := $(BUILD_DIR)/busybox-image.tar
# The pod sandbox image of the CRI test: the same busybox, sleeping.
PAUSE_TAR := $(BUILD_DIR)/pause-image.tar
# bench/ and tests/cri/ are cargo workspaces of their own (their gRPC stack never enters the
# shim's build); they share one build directory so that stack is compiled once.
AUX_TARGET := $(CURDIR)/target/aux

# Tests run two at a time: each starts its own containerd, and these machines have 2 cores.
TEST_THREADS ?= 2
# Extra arguments for the test binaries, e.g. `make test TEST_ARGS=runc` to run only the
# checks against the reference runc shim.
TEST_ARGS ?=

# The containerd the tests use by default is Debian bookworm's 1.6 in PATH. The end-to-end and
# CRI tests also run against these, which scripts/fetch-containerd.sh extracts (never installs)
# from Debian trixie (1.7) and sid (2.1) into build/containerd-<version>/.
CONTAINERD_VERSIONS ?= 1.7 2.1
E2E_TESTS := $(patsubst tests/%.rs,--test %,$(wildcard tests/e2e_*.rs))

.PHONY: all toolchain build rootfs image bundles check test demo bench lint sweep clean

all: build

# The standard library of the target .cargo/config.toml builds for (musl), added with rustup
# when missing.
toolchain:
	@scripts/rust-target.sh

build: toolchain
	$(CARGO) build --release

# The rootfs is rebuilt when busybox or the script changes. $(wildcard) keeps a missing busybox
# from turning into make's "no rule" error: the script then says what to install.
rootfs: $(ROOTFS)/bin/busybox
$(ROOTFS)/bin/busybox: scripts/build-rootfs.sh $(wildcard $(BUSYBOX))
	BUSYBOX=$(BUSYBOX) scripts/build-rootfs.sh $(ROOTFS)

image: $(IMAGE_TAR) $(PAUSE_TAR)
$(IMAGE_TAR): $(ROOTFS)/bin/busybox scripts/build-image.sh
	scripts/build-image.sh $(IMAGE_TAR) $(ROOTFS)
$(PAUSE_TAR): $(ROOTFS)/bin/busybox scripts/build-image.sh
	IMAGE_NAME=docker.io/library/sibling-pause:latest IMAGE_CMD='["/bin/sleep","2147483647"]' \
		scripts/build-image.sh $(PAUSE_TAR) $(ROOTFS)

# Tests copy test-bundles/*/config.json into temporary directories themselves and put a copy
# of the rootfs beside it: all they need from here is build/rootfs.
bundles: rootfs

# The first thing a contributor runs: formatting, clippy, and every test that needs no root
# (unit tests; the protocol, security and end-to-end tests are marked `needs root` and reported
# as ignored here). Under a minute after a build. `make test` runs everything.
check: toolchain
	$(CARGO) fmt --check
	$(CARGO) clippy --release --all-targets -- -D warnings
	$(CARGO) test --release

# --no-fail-fast: one failing test binary must not hide the results of the others.
# --include-ignored: the tests marked `needs root` run too (CI runs as root).
test: build rootfs image criu
	SIBLING_ROOTFS=$(ROOTFS) SIBLING_IMAGE_TAR=$(IMAGE_TAR) SIBLING_CRIU=$(CRIU) \
		$(CARGO) test --release --no-fail-fast -- --include-ignored --test-threads=$(TEST_THREADS) $(TEST_ARGS)
	CARGO_TARGET_DIR=$(AUX_TARGET) $(CARGO) test --release --workspace --manifest-path bench/Cargo.toml
	CARGO_TARGET_DIR=$(AUX_TARGET) $(CARGO) test --release --manifest-path tests/cri/Cargo.toml -- --include-ignored
	$(MAKE) test-containerd-versions
	$(MAKE) test-cgroup-v2
	$(MAKE) test-node-vm NODE_VM_CONTAINERD_VERSIONS="$(CONTAINERD_VERSIONS)"

# CRIU for the checkpoint/restore tests: Debian trixie's criu 4.1.1 with its libc, extracted
# (never installed) into build/criu/ by scripts/fetch-criu.sh (bookworm's 3.17.1 fails
# `criu check` on these kernels). Quick when it is there.
CRIU := $(BUILD_DIR)/criu/usr/sbin/criu
.PHONY: criu
criu:
	scripts/fetch-criu.sh >/dev/null

# Fetches the containerds of CONTAINERD_VERSIONS into build/ (quick when they are there).
.PHONY: containerd-versions
containerd-versions:
	scripts/fetch-containerd.sh $(CONTAINERD_VERSIONS)

# The end-to-end test binaries (tests/e2e_*.rs) and the CRI test against each containerd of
# CONTAINERD_VERSIONS (its containerd, ctr and containerd-shim-runc-v2, through
# SIBLING_CONTAINERD_BIN_DIR). Every version runs even when an earlier one failed; the exit
# status says whether all passed. `make test` runs it.
.PHONY: test-containerd-versions
test-containerd-versions: build rootfs image containerd-versions
	@rc=0; failed=""; \
	for v in $(CONTAINERD_VERSIONS); do \
		bin=$(BUILD_DIR)/containerd-$$v/usr/bin; \
		echo "== containerd $$v: $$($$bin/containerd --version)"; \
		SIBLING_CONTAINERD_BIN_DIR=$$bin SIBLING_ROOTFS=$(ROOTFS) SIBLING_IMAGE_TAR=$(IMAGE_TAR) \
			$(CARGO) test --release --no-fail-fast $(E2E_TESTS) \
			-- --include-ignored --test-threads=$(TEST_THREADS) $(TEST_ARGS) || { rc=1; failed="$$failed $$v:e2e"; }; \
		SIBLING_CONTAINERD_BIN_DIR=$$bin CARGO_TARGET_DIR=$(AUX_TARGET) \
			$(CARGO) test --release --manifest-path tests/cri/Cargo.toml -- --include-ignored || { rc=1; failed="$$failed $$v:cri"; }; \
	done; \
	if [ $$rc -ne 0 ]; then echo "test-containerd-versions: failed:$$failed" >&2; fi; \
	exit $$rc

# The protocol and security tests in a throwaway qemu VM whose host is pure cgroup v2 (these
# machines are hybrid v1; see scripts/vm/cgroup-v2-vm.sh). The first run installs
# qemu-system-x86 from bookworm-backports and downloads a Debian kernel into build/vm/.
# CGROUP_V2_TESTS picks tests by exact name (default `all`); VM_* variables tune the VM
# (VM_VERBOSE=1 shows its console). `make test` runs it.
CGROUP_V2_TESTS ?= all
.PHONY: test-cgroup-v2
test-cgroup-v2: rootfs
	@bins=$$($(CARGO) test --release --no-run --test protocol --test security \
		--message-format=json | \
		grep -o '"executable":"[^"]*/\(protocol\|security\)-[^"/]*"' | cut -d'"' -f4); \
	[ -n "$$bins" ] || { echo "test-cgroup-v2: no test binaries" >&2; exit 1; }; \
	CI=true SIBLING_ROOTFS=$(ROOTFS) scripts/vm/cgroup-v2-vm.sh bash -c \
		'rc=0; for bin; do tests/vm/cgroup-v2-protocol.sh "$$bin" $(CGROUP_V2_TESTS) || rc=1; done; exit $$rc' \
		cgroup-v2 $$bins

# The tests that need a Kubernetes-like node, in one boot of a qemu VM (TCG) that runs the
# host's systemd as PID 1 with D-Bus, pure cgroup v2 and AppArmor on (scripts/vm/node-vm.sh;
# these machines have none of the three). The test binaries are built here, on the host:
# the AppArmor tests of tests/security.rs, tests/systemd_cgroup.rs (the systemd cgroup driver),
# and the CRI tests with AppArmor, a pod and the systemd cgroup driver (tests/cri);
# tests/vm/node-vm-tests.sh runs them in the guest. The first run installs apparmor
# (apparmor_parser), and like test-cgroup-v2 qemu and a Debian kernel. VM_* variables tune the VM.
# NODE_VM_CONTAINERD_VERSIONS="1.7 2.1" also runs the CRI AppArmor and systemd tests against those
# (from `make containerd-versions`; about 2 more minutes each). `make test` runs it with
# CONTAINERD_VERSIONS (about 6 to 9 minutes: 35 to 45 s of boot under TCG, then the tests).
NODE_VM_TESTS := --test security $(if $(wildcard tests/systemd_cgroup.rs),--test systemd_cgroup)
NODE_VM_CONTAINERD_VERSIONS ?=
.PHONY: test-node-vm
test-node-vm: build rootfs image $(if $(NODE_VM_CONTAINERD_VERSIONS),containerd-versions)
	@bins=$$($(CARGO) test --release --no-run $(NODE_VM_TESTS) --message-format=json | \
		grep -o '"executable":"[^"]*/\(security\|systemd_cgroup\)-[^"/]*"' | cut -d'"' -f4); \
	cri_bins=$$(CARGO_TARGET_DIR=$(AUX_TARGET) $(CARGO) test --release --no-run \
		--manifest-path tests/cri/Cargo.toml --test apparmor --test pod --test systemd \
		--message-format=json | \
		grep -o '"executable":"[^"]*/\(apparmor\|pod\|systemd\)-[^"/]*"' | cut -d'"' -f4); \
	[ -n "$$bins" ] && [ -n "$$cri_bins" ] || { echo "test-node-vm: no test binaries" >&2; exit 1; }; \
	CI=true SIBLING_ROOTFS=$(ROOTFS) SIBLING_IMAGE_TAR=$(IMAGE_TAR) \
		NODE_VM_CONTAINERD_VERSIONS="$(NODE_VM_CONTAINERD_VERSIONS)" \
		VM_ENV="CI SIBLING_ROOTFS SIBLING_IMAGE_TAR RUST_BACKTRACE RUST_LOG NODE_VM_CONTAINERD_VERSIONS" \
		scripts/vm/node-vm.sh tests/vm/node-vm-tests.sh $$bins $$cri_bins

# Runs a few containers through a private containerd with our shim. DEMO_RUNTIME picks another
# runtime (e.g. io.containerd.runc.v2) to compare.
demo:
	scripts/demo.sh

# io.containerd.sibling.v2 side by side with io.containerd.runc.v2 through a private
# containerd; writes docs/BENCHMARKS.md and docs/bench/ (see scripts/bench.sh for sizes).
bench:
	scripts/bench.sh

# sibling against runc.v2 with runc and runc.v2 with crun (trixie's, by scripts/fetch-trixie.sh)
# in the pure cgroup v2 VM, where crun runs: `ctr run --rm` ratios in one run, written to
# docs/bench/vm-crun.md (bench/vm/crun-ratios.sh; BENCH_VM_RUNS sets the runs per runtime).
.PHONY: bench-vm
bench-vm: build image
	scripts/fetch-trixie.sh crun >/dev/null
	VM_TIMEOUT=$${VM_TIMEOUT:-1500} VM_ENV="BENCH_VM_RUNS" scripts/vm/cgroup-v2-vm.sh \
		bench/vm/crun-ratios.sh $(CURDIR)/build/crun/usr/bin/crun >docs/bench/vm-crun.md.new
	mv docs/bench/vm-crun.md.new docs/bench/vm-crun.md

# bench/ and tests/cri/ are linted too.
lint: toolchain
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings
	$(CARGO) fmt --check --manifest-path bench/Cargo.toml
	$(CARGO) fmt --check --manifest-path tests/cri/Cargo.toml
	CARGO_TARGET_DIR=$(AUX_TARGET) $(CARGO) clippy --release --workspace --manifest-path bench/Cargo.toml --all-targets -- -D warnings
	CARGO_TARGET_DIR=$(AUX_TARGET) $(CARGO) clippy --release --manifest-path tests/cri/Cargo.toml --all-targets -- -D warnings

# Stops private containerds and removes directories left by test processes that died.
sweep:
	scripts/sweep-test-leftovers.sh

clean:
	rm -rf $(BUILD_DIR)
	$(CARGO) clean
