# The bundle's commands. `make local` and `make test` work on a fresh machine
# with no AWS account and no Docker: Python tools go into .venv (pinned in
# tools/requirements.txt), everything else is cargo.

SHELL := /bin/bash
VENV := .venv
PYTHON ?= python3
# tools/requirements.txt takes in the Python reference's pins (bench/python-reference/requirements.txt): the stamp changes with either.
VENV_REQUIREMENTS := tools/requirements.txt bench/python-reference/requirements.txt
STAMP := $(VENV)/.installed-$(shell cat $(VENV_REQUIREMENTS) | sha256sum | cut -c1-12)
# sam finds cargo-lambda and zig on PATH.
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
# sam needs a region even offline.
export AWS_DEFAULT_REGION ?= us-east-1
export SAM_CLI_TELEMETRY := 0

.PHONY: help venv test fmt-check lint doc unit integration validate build local events post-events trigger clean-local bench-load simulate

help:
	@echo "make local        run every function at its route on http://127.0.0.1:3000, the events processor on the events table's stream and the jobs worker (local AWS endpoint included)"
	@echo "make post-events  post every request in events/ to the running local stack, show what was stored, then what reached the partner"
	@echo "make ops ARGS=\"status\"   run revel-ops against the running make local (its environment from .local/functions.env)"
	@echo "make partner-stop / make partner-start   close the running make local's partner stand-in's port (connections refused) / open it again"
	@echo "make test         format, lint, API docs, unit and integration tests, sam validate --lint"
	@echo "make bench-lambda release functions as Lambda runs them (local Runtime API): init, latency, CPU, RSS, the ack path's AWS requests and round trips, the events processor per record, beside a hello-world floor"
	@echo "make build        sam build --beta-features (arm64, cargo-lambda + zig)"
	@echo "make deploy-guided   explain each parameter sam deploy --guided will ask, in its order, then run it (DEPLOY_ARGS for sam's own options)"
	@echo "make bench-hot-path   what a receiver does before its first network call, per sample (criterion)"
	@echo "make bench-dynamodb   DynamoDB write requests and write units per sample, new and repeated"
	@echo "make bench-package    zipped size of each function's bootstrap from the last make build"
	@echo "make events       re-sign the sample events in events/ from events/payloads/ and write the processor's, jobs worker's and scheduler's inputs"
	@echo "make trigger TASK=tick|<scheduled task> [INSTANCE=name] [AT=2026-11-30T07:55:00Z]   run the scheduler by hand (make local lists the tasks; an unknown TASK too)"
	@echo "make bench-load   load test: 10,000 signed deliveries (30% repeats, concurrency 32) to a stack of its own, then check each stored once"
	@echo "make fuzz         run each cargo-fuzz target in fuzz/ for FUZZ_SECONDS (60) on nightly; findings in fuzz/artifacts/"
	@echo "make simulate     the deterministic simulation for SEEDS seeds (10000); SEED=n replays one seed with its trace"

venv: $(STAMP)

$(STAMP): $(VENV_REQUIREMENTS)
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r tools/requirements.txt
	rm -f $(VENV)/.installed-*
	touch $@

test: fmt-check lint doc unit integration validate

fmt-check:
	cargo fmt --all --check

lint:
	cargo clippy --workspace --all-targets --locked -- -D warnings

# The API docs build without a warning and every intra-doc link resolves
# (private items included: their links are read by contributors too).
doc:
	RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --document-private-items --locked

# The venv first: lambda-sandbox's stand-in tests run boto3 against it.
unit: venv
	LOCAL_AWS_PYTHON=$(CURDIR)/$(VENV)/bin/python cargo test --workspace --exclude integration-tests --exclude revel-ops --locked

# Starts its own local AWS endpoint on a free loopback port and stops it;
# then the Python reference's own tests (moto in-process), so make bench-lambda
# compares with a receiver that verifies and stores once.
# lambda_path runs the real binaries of these functions through a local
# Runtime API: they are built first, so it never runs stale ones.
LAMBDA_PATH_FUNCTIONS := revel-order-finalized vinesos-customer-created events-processor
integration: venv
	cargo build --locked $(addprefix -p ,$(LAMBDA_PATH_FUNCTIONS))
	LOCAL_AWS_PYTHON=$(CURDIR)/$(VENV)/bin/python cargo test -p integration-tests -p revel-ops --locked
	$(VENV)/bin/python -m unittest discover -s bench/python-reference

# Whole functions as Lambda runs them: release builds against a local Runtime
# API (tools/lambda-sandbox), beside a hello-world floor and the Python
# reference a user would write instead (bench/python-reference, run by
# awslambdaric from .venv), each receiver's budgets against both and the cost
# per million events. Counts on moto behind a recording proxy (and the events
# processor on what the receivers left on its stream); timing on the
# in-process stand-in over HTTP, and over HTTPS for what TLS adds. Reports,
# doesn't gate. BENCH_ARGS="--functions all --json out.json" (or
# --no-processor, --no-reference, --no-stand-in, --no-tls, --cold-starts N).
.PHONY: bench-lambda
BENCH_FUNCTIONS := revel-order-finalized revel-stock-changed winesitting-webhook booking-bookings vinesos-customer-created
bench-lambda: venv
	cargo build --release --locked -p lambda-floor -p lambda-bench -p events-processor $(addprefix -p ,$(BENCH_FUNCTIONS))
	LOCAL_AWS_PYTHON=$(CURDIR)/$(VENV)/bin/python target/release/lambda-bench $(BENCH_ARGS)

validate: venv
	sam validate --lint --template template.yaml

# The deterministic simulation of the whole bundle (tests/simulation). `make
# test` runs 500 seeds as one of the unit tests; this runs SEEDS more in a
# release build, and SEED=n replays one seed and prints its trace.
SEEDS ?= 10000
simulate:
	cargo run --release --locked -p simulation --bin simulate -- --seeds $(SEEDS) $(if $(SEED),--seed $(SEED))

# Benchmarks report figures; they don't gate CI. The README's Performance
# section says what each measures and on which machine.
.PHONY: bench-hot-path bench-dynamodb bench-package
bench-hot-path:
	cargo bench --locked -p integration-tests --bench hot_path -- --noplot
	$(PYTHON) tools/bench/hot_path_table.py

bench-dynamodb: venv
	set -o pipefail; LOCAL_AWS_PYTHON=$(CURDIR)/$(VENV)/bin/python cargo test --locked -p integration-tests --test dynamodb_cost -- --nocapture 2>&1 | grep -E '^\||test result'

bench-package:
	$(PYTHON) tools/bench/package_sizes.py

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

# revel-ops against `make local`: the functions' environment `up` wrote to
# .local/functions.env (tables, queues, secrets, REVEL_API_BASE_URL,
# DOWNSTREAM_URL, WEBHOOK_API_URL, the local AWS endpoint and its
# credentials), each line exported as it is. ARGS="instance add NAME ...",
# "backfill status", "status", ... (`ARGS=--help` lists them). make's own
# exit status is 2 when revel-ops fails; "Error 6" is revel-ops' code
# (status: unhealthy).
.PHONY: ops partner-stop partner-start
ops:
	@test -f .local/functions.env || { echo "no .local/functions.env: start make local first"; exit 2; }
	@while IFS= read -r line; do [ -n "$$line" ] && export "$$line"; done < .local/functions.env; \
	exec cargo run --quiet --locked -p revel-ops -- $(ARGS)

# The partner stand-in of `make local`, on its own port (DOWNSTREAM_URL):
# stopped, that port refuses connections, as a partner that is down does.
partner-stop:
	cargo run --quiet --locked -p local-stack -- partner stop

partner-start:
	cargo run --quiet --locked -p local-stack -- partner start

# Runs the scheduler by hand against `make local`: TASK=tick (the 5-minute tick, at AT, a UTC time) or one task now, for INSTANCE or every instance
trigger:
	@test -n "$(TASK)" || { echo "usage: make trigger TASK=tick|<scheduled task> [INSTANCE=name] [AT=2026-11-30T07:55:00Z] (an unknown TASK lists the tasks)"; exit 2; }
	cargo run --quiet --locked -p local-stack -- trigger $(TASK) $(if $(INSTANCE),--instance $(INSTANCE)) $(if $(AT),--at $(AT))

clean-local:
	rm -rf .local .aws-sam

# Load test against a stack of its own; not part of `make test`. `xtask
# bench-load` (tools/xtask) starts `local-stack up` on two free loopback
# ports, waits until it answers, runs `local-stack load` (10,000 signed
# deliveries, 30% repeats, concurrency 32, then checks each distinct event
# was stored once; LOAD_ARGS="--count 2000" to change it), and stops the
# stack, also when load fails or on Ctrl-C. A running `make local` keeps its
# .local/stack.json and functions.env (put back after).
bench-load: venv
	cargo run --quiet --locked -p xtask -- bench-load --python $(CURDIR)/$(VENV)/bin/python $(LOAD_ARGS)

# Fuzzing, not part of `make test`. `xtask fuzz` (tools/xtask) builds the
# cargo-fuzz targets in fuzz/ (nightly and the pinned cargo-fuzz, installed
# if missing) and runs each for FUZZ_SECONDS (60), the payload and API
# Gateway targets starting from the samples in events/. New corpus entries
# go to fuzz/corpus/<target>/, a crash's input to fuzz/artifacts/<target>/,
# each run's output to fuzz/logs/<target>.log. Fails if any target found
# something. FUZZ_TARGETS="payloads" for one (all by default).
.PHONY: fuzz
fuzz:
	cargo run --quiet --locked -p xtask -- fuzz $(if $(FUZZ_SECONDS),--seconds $(FUZZ_SECONDS)) $(if $(FUZZ_TARGETS),--targets $(FUZZ_TARGETS))

# The first deploy, explained: `xtask deploy-guided` (tools/xtask) prints
# what `sam deploy --guided` will ask, in its order, with each parameter's
# group, label, default and description from template.yaml (SAM itself shows
# only "Parameter Name [default]:"), then runs `sam deploy --guided
# $(DEPLOY_ARGS)`. Run `make build` first.
.PHONY: deploy-guided
deploy-guided: venv
	cargo run --quiet --locked -p xtask -- deploy-guided --sam $(CURDIR)/$(VENV)/bin/sam $(DEPLOY_ARGS)
