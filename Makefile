# strata — make targets. `make demo` shows strata at work; `make test` is what CI runs.
SHELL := /bin/bash
CARGO ?= cargo

# Tests and the demo use the tools `make tools` provides: terraform from PATH or bin/, and the
# offline provider mirror through bin/terraformrc.
export PATH := $(CURDIR)/bin:$(PATH)
export TF_CLI_CONFIG_FILE := $(CURDIR)/bin/terraformrc
export TF_IN_AUTOMATION := 1

.PHONY: all tools build test fmt clippy demo bench clean

all: build

tools:
	@bash .ci/tools.sh

build:
	$(CARGO) build --locked --bins

fmt:
	$(CARGO) fmt --all

clippy:
	$(CARGO) clippy --locked --workspace --all-targets -- -D warnings

test: tools
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --workspace --all-targets -- -D warnings
	$(CARGO) build --locked --workspace --examples
	@mkdir -p target
	set -o pipefail; $(CARGO) test --locked --workspace --lib --tests 2>&1 | tee target/test.log
	@python3 .ci/summary.py target/test.log

# The whole story: plan, apply, drift, the agent; see stacks/demo.sh.
demo: tools build
	@bash stacks/demo.sh

# Measured, never asserted: prints a table (see docs/performance.md). BENCH_SIZES=1000,10000.
bench: tools
	$(CARGO) build --locked --release --bins --examples
	./target/release/examples/bench

clean:
	$(CARGO) clean
	rm -rf .strata
