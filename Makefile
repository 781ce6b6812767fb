# The bundle's commands. `make local` and `make test` work on a fresh machine
# with no AWS account and no Docker: Python tools go into .venv (pinned in
# tools/requirements.txt), everything else is cargo.

SHELL := /bin/bash
VENV := .venv
PYTHON ?= python3
STAMP := $(VENV)/.installed-$(shell sha256sum tools/requirements.txt | cut -c1-12)
# sam finds cargo-lambda and zig on PATH.
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
# sam needs a region even offline.
export AWS_DEFAULT_REGION ?= us-east-1
export SAM_CLI_TELEMETRY := 0

.PHONY: help venv test fmt-check lint unit integration validate build local events post-events trigger clean-local

help:
	@echo "make local        run every function at its route on http://127.0.0.1:3000 (local AWS endpoint included)"
	@echo "make post-events  post every file in events/ to the running local stack and show what was stored"
	@echo "make test         format, lint, unit and integration tests, sam validate --lint"
	@echo "make build        sam build --beta-features (arm64, cargo-lambda + zig)"
	@echo "make events       re-sign the sample events in events/ from events/payloads/"
	@echo "make trigger TASK=product_sync|event_sync|inventory_sync|reconcile|winesitting_repair   run a scheduled function by hand"

venv: $(STAMP)

$(STAMP): tools/requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r tools/requirements.txt
	rm -f $(VENV)/.installed-*
	touch $@

test: fmt-check lint unit integration validate

fmt-check:
	cargo fmt --all --check

lint:
	cargo clippy --workspace --all-targets --locked -- -D warnings

unit:
	cargo test --workspace --exclude integration-tests --locked

# Starts its own local AWS endpoint on a free loopback port and stops it.
integration: venv
	LOCAL_AWS_PYTHON=$(CURDIR)/$(VENV)/bin/python cargo test -p integration-tests --locked

validate: venv
	sam validate --lint --template template.yaml

# arm64 binaries for provided.al2023, cross-compiled with cargo-lambda + zig.
build: venv
	rustup target add aarch64-unknown-linux-gnu
	sam build --beta-features --template template.yaml

events:
	cargo run --quiet --locked -p local-stack -- gen-events

local: venv
	cargo run --quiet --locked -p local-stack -- up --python $(CURDIR)/$(VENV)/bin/python

post-events:
	cargo run --quiet --locked -p local-stack -- post-events

# Runs a scheduled function by hand against `make local`: TASK=product_sync|event_sync|inventory_sync|reconcile|winesitting_repair
trigger:
	@test -n "$(TASK)" || { echo "usage: make trigger TASK=product_sync|event_sync|inventory_sync|reconcile|winesitting_repair"; exit 2; }
	cargo run --quiet --locked -p local-stack -- trigger $(TASK)

clean-local:
	rm -rf .local .aws-sam
