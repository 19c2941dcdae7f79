# Targets follow the original agent's Makefile where they make sense here.
# `make demo` and `make test` are the two commands a newcomer needs.

CARGO ?= cargo
TARGET ?= x86_64-unknown-linux-gnu
# Where cargo puts what it builds (CARGO_TARGET_DIR when set).
TARGET_DIR ?= $(if $(CARGO_TARGET_DIR),$(CARGO_TARGET_DIR),$(CURDIR)/target)

.PHONY: all build static release deb test test-in-docker unit-tests run-integ-tests \
        run-functional-tests demo setup lint fmt clean fuzz bench bench-quick

all: build

## build: release binaries target/release/ecs-agent and target/release/ecs-local
build:
	$(CARGO) build --release --bin ecs-agent --bin ecs-local

## static: statically linked ecs-agent and ecs-local (glibc, crt-static),
## in target/$(TARGET)/release: what the image and the package hold
# They carry the commit they were built from (`ecs-agent -version`, the
# User-Agent); a change of commit rebuilds only the agent crate.
ECS_AGENT_GIT_HASH ?= $(shell git rev-parse --short=8 HEAD 2>/dev/null || echo unknown)
static:
	RUSTFLAGS="-C target-feature=+crt-static" ECS_AGENT_GIT_HASH=$(ECS_AGENT_GIT_HASH) \
		$(CARGO) build --release --target $(TARGET) --bin ecs-agent --bin ecs-local
	@echo "built target/$(TARGET)/release/ecs-agent and ecs-local"

VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
STATIC_AGENT := $(TARGET_DIR)/$(TARGET)/release/ecs-agent
IMAGE_NAME ?= ecs-agent-rs
IMAGE_DIR := $(TARGET_DIR)/image
# The classic builder where BuildKit's buildx plugin is not installed
# (Debian's docker.io has none); the Dockerfile needs nothing newer.
DOCKER_BUILDKIT ?= $(shell docker buildx version >/dev/null 2>&1 && echo 1 || echo 0)
DEB_REVISION ?= 1
DEB_DIR := $(TARGET_DIR)/deb

## release: the agent's container image from the static binary and the
## host's CA certificates, on no base image (packaging/docker/Dockerfile),
## tagged amazon/amazon-ecs-agent:make, ecs-agent-rs:<version> and
## ecs-agent-rs:latest; and its `docker save` archive, which is also the
## bundle of an agent update: target/image/ecs-agent-rs-v<version>.tar
release: static
	rm -rf $(IMAGE_DIR)
	mkdir -p $(IMAGE_DIR)/rootfs/etc/ssl/certs
	strip -o $(IMAGE_DIR)/rootfs/agent $(STATIC_AGENT)
	cp /etc/ssl/certs/ca-certificates.crt $(IMAGE_DIR)/rootfs/etc/ssl/certs/
	cp packaging/docker/Dockerfile $(IMAGE_DIR)/
	DOCKER_BUILDKIT=$(DOCKER_BUILDKIT) docker build -q \
		-t amazon/amazon-ecs-agent:make -t $(IMAGE_NAME):$(VERSION) -t $(IMAGE_NAME):latest \
		$(IMAGE_DIR)
	docker save -o $(IMAGE_DIR)/$(IMAGE_NAME)-v$(VERSION).tar $(IMAGE_NAME):$(VERSION) $(IMAGE_NAME):latest
	@echo "built image $(IMAGE_NAME):$(VERSION) and $(IMAGE_DIR)/$(IMAGE_NAME)-v$(VERSION).tar"

## deb: the Debian package target/deb/ecs-agent-rs_<version>-<DEB_REVISION>_amd64.deb
## (the static agent, ecs-local, the systemd units, /etc/ecs/ecs.config)
deb: static
	packaging/deb/build $(VERSION)-$(DEB_REVISION) $(STATIC_AGENT) \
		$(TARGET_DIR)/$(TARGET)/release/ecs-local $(DEB_DIR)

## setup: install and start what the tests and the demo need (idempotent)
setup:
	scripts/setup

## test: everything: unit, golden-sample, Docker integration and end-to-end tests
# The build line also type-checks the fuzz targets, so they cannot drift from
# the code. They are workspace members (one Cargo.lock, one target dir) whose
# binaries have `test = false`, so `cargo test` alone never compiles them.
# `--bins --tests` asks for the same units and features as `cargo test`, which
# then only runs what is built: the extra cost is compiling and linking the
# fuzz binaries, measured on 2 cores at about 10 s after a change to the
# agent, 0.3 s with nothing changed, and 30 s once on a cold target dir
# (libfuzzer-sys compiles libFuzzer's C++). `cargo check` would cost more: it
# needs a second, check-mode build of every dependency; and a separate fuzz
# workspace (`--manifest-path`) resolves features differently and rebuilds
# most of the dependency tree a second time.
# The image and the static binaries are built first: the image, package
# and init-service tests run what users install.
test: setup release
	$(CARGO) build --workspace --bins --tests
	ECS_E2E_BINARIES_BUILT=1 $(CARGO) test --workspace $(TEST_ARGS)

## test-in-docker: the test suite in a Debian container built locally
## (scripts/test-image; nothing pulled), with the Docker socket, this tree
## and /tmp mounted at their own paths and this host's Rust toolchain;
## TEST_IN_DOCKER_CMD replaces `make test` (for example a single cargo test)
# One test cannot run there: it restarts the Docker engine, which ends the
# container it runs in (and the engine started from inside goes with it).
TEST_IN_DOCKER_CMD ?= make test TEST_ARGS="-- --skip agent_follows_a_docker_engine_restart"
# The reference spec, when there, at its own path (the tests look for it
# next to the workspace, or at ECS_SPEC_DIR).
SPEC_DIR := $(abspath $(or $(ECS_SPEC_DIR),$(wildcard $(CURDIR)/../shared/spec)))
# What the host set-up, task cgroup and package tests do to the host:
# iptables, sysctls under /proc/sys, cgroups. Not --privileged, which a
# Docker engine that lacks a capability itself (this one in a sandbox)
# cannot grant.
TEST_IN_DOCKER_PRIVILEGES := --cap-add=NET_ADMIN --cap-add=NET_RAW --cap-add=SYS_ADMIN \
	--security-opt=seccomp=unconfined --security-opt=apparmor=unconfined \
	--security-opt=systempaths=unconfined --volume=/sys/fs/cgroup:/sys/fs/cgroup
# The ECR pull test gives the host's Docker engine a registry name and its
# CA: it writes the host's /etc/hosts and /etc/docker/certs.d, which the
# engine reads, not the container's own.
TEST_IN_DOCKER_HOST_FILES := --volume=/etc/hosts:/etc/hosts \
	--volume=/etc/docker/certs.d:/etc/docker/certs.d
# The build settings of whoever runs it (CI's, say) go in too: with others,
# cargo inside would build a second copy of the workspace crates.
CARGO_HOME ?= $(HOME)/.cargo
RUSTUP_HOME ?= $(HOME)/.rustup
test-in-docker:
	scripts/test-image
	mkdir -p /etc/docker/certs.d
	docker run --rm --net=host --pid=host $(TEST_IN_DOCKER_PRIVILEGES) $(TEST_IN_DOCKER_HOST_FILES) \
		--volume=/var/run/docker.sock:/var/run/docker.sock \
		--volume=/tmp:/tmp --volume=$(CURDIR):$(CURDIR) --workdir=$(CURDIR) \
		--volume=$(CARGO_HOME):/root/.cargo --volume=$(RUSTUP_HOME):/root/.rustup:ro \
		$(foreach d,$(SPEC_DIR),--volume=$(d):$(d):ro) \
		--env=CARGO_TARGET_DIR=$(TARGET_DIR) --env=ECS_SPEC_REQUIRED --env=ECS_SPEC_DIR \
		--env=CARGO_INCREMENTAL --env=CARGO_PROFILE_DEV_DEBUG \
		ecs-agent-rs-test:latest $(TEST_IN_DOCKER_CMD)

## unit-tests: tests that need neither Docker nor the binaries
unit-tests:
	$(CARGO) test --workspace --lib
	$(CARGO) test -p ecs-model

## run-integ-tests: the agent's tests against the real Docker engine
run-integ-tests: setup
	$(CARGO) test -p ecs-agent --test docker_integ

## run-functional-tests: end-to-end tests with both binaries, the AWS CLI and SDK
run-functional-tests: setup
	$(CARGO) test -p e2e

## demo: run a task on the local control plane (Ctrl-C stops everything)
demo: setup
	scripts/demo

## bench: the agent (release build, with ecs-local) against Docker's API on
## this machine; writes docs/benchmarks.md. About 18 minutes on two cores
## (its "Run time" section says where they go); ARGS=--quick (or
## `make bench-quick`) for a run of about 3 minutes with fewer samples.
## ARGS="--only scale" runs figure 9 alone (ecs-local with 10,000 tasks,
## no agent, no Docker) and puts it in place in docs/benchmarks.md.
# The release binaries and the static one come from the two targets it
# depends on; the tool's own check that they are up to date then has nothing
# to do. It runs as a plain process, not under `cargo run`, whose variables
# would reach that check and make cargo build them again. Nothing here runs
# in `make test`.
bench: setup build static
	$(CARGO) build --release -p bench --bin ecs-bench
	$(TARGET_DIR)/release/ecs-bench --static-target $(TARGET) $(ARGS)

bench-quick:
	$(MAKE) bench ARGS=--quick

## fuzz: every cargo-fuzz target for FUZZ_SECONDS seconds each (default 60);
## fails if any target crashes. See docs/fuzzing.md.
# cargo-fuzz passes nightly-only flags (-Zsanitizer=address); RUSTC_BOOTSTRAP=1
# lets the stable toolchain accept them. The workspace's release profile has
# fat LTO, which makes each fuzz binary take minutes to link and buys the
# fuzzer nothing, so it is turned off here, and the size-first opt-level
# is put back to speed. Builds go to target/fuzz so they
# never disturb the debug and release builds. New inputs are written to
# target/fuzz/corpus/<crate>/<target>, with the committed corpus in
# crates/<crate>/fuzz/corpus/<target> read as seeds, so a run leaves the tree
# clean; docs/fuzzing.md says how to merge new inputs back. The recorded
# samples of the reference spec are seeds too when they are there: they are
# never copied into the repository.
FUZZ_SECONDS ?= 60
FUZZ_CRATES := ecs-model ecs-agent ecs-local
FUZZ_TARGET_DIR := $(CURDIR)/target/fuzz
FUZZ_ENV := RUSTC_BOOTSTRAP=1 CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_OPT_LEVEL=3
FUZZ_SPEC_SEEDS := $(wildcard $(CURDIR)/../shared/spec/samples)

fuzz:
	@command -v cargo-fuzz >/dev/null 2>&1 || $(CARGO) install cargo-fuzz --locked
	@set -e; for crate in $(FUZZ_CRATES); do \
		echo "==> building the fuzz targets of $$crate"; \
		(cd crates/$$crate && $(FUZZ_ENV) $(CARGO) fuzz build \
			--target-dir $(FUZZ_TARGET_DIR)); \
	done
	@failed=""; for crate in $(FUZZ_CRATES); do \
		for t in $$(cd crates/$$crate && $(CARGO) fuzz list); do \
			echo "==> fuzzing $$crate/$$t for $(FUZZ_SECONDS)s"; \
			new=$(FUZZ_TARGET_DIR)/corpus/$$crate/$$t; mkdir -p $$new; \
			(cd crates/$$crate && $(FUZZ_ENV) $(CARGO) fuzz run \
				--target-dir $(FUZZ_TARGET_DIR) $$t $$new fuzz/corpus/$$t \
				$(FUZZ_SPEC_SEEDS) -- -max_total_time=$(FUZZ_SECONDS)) \
				|| failed="$$failed $$crate/$$t"; \
		done; \
	done; \
	if [ -n "$$failed" ]; then \
		echo "==> fuzz FAILED:$$failed (the input is in crates/<crate>/fuzz/artifacts/<target>/)"; \
		exit 1; \
	fi; \
	echo "==> fuzz: no target crashed"

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

clean:
	$(CARGO) clean
