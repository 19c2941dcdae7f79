# Targets follow the original agent's Makefile where they make sense here.
# `make demo` and `make test` are the two commands a newcomer needs.

CARGO ?= cargo
TARGET ?= x86_64-unknown-linux-gnu

.PHONY: all build static test unit-tests run-integ-tests run-functional-tests \
        demo setup lint fmt clean

all: build

## build: release binaries target/release/ecs-agent and target/release/ecs-local
build:
	$(CARGO) build --release --bin ecs-agent --bin ecs-local

## static: a statically linked ecs-agent (glibc, crt-static)
static:
	RUSTFLAGS="-C target-feature=+crt-static" \
		$(CARGO) build --release --target $(TARGET) --bin ecs-agent
	@echo "built target/$(TARGET)/release/ecs-agent"

## setup: install and start what the tests and the demo need (idempotent)
setup:
	scripts/setup

## test: everything: unit, golden-sample, Docker integration and end-to-end tests
test: setup
	$(CARGO) test --workspace

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

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

clean:
	$(CARGO) clean
