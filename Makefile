# Agentry — one install, one test command. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help
export UV_SYSTEM_CERTS ?= 1
export CLOUDSDK_CORE_DISABLE_PROMPTS ?= 1
export CLOUDSDK_COMPONENT_MANAGER_DISABLE_UPDATE_CHECK ?= 1
# Python caches bytecode (in gitignored __pycache__ directories) even where the environment says not to:
# the tests and `make dev` start hundreds of Python processes (operators, servers, CLIs, pytest
# workers), and without the cache each compiles every module it imports again (pytest's collection
# alone: 30 s of CPU a worker instead of about 9).
unexport PYTHONDONTWRITEBYTECODE
PY := .venv/bin/python
PYTEST := .venv/bin/pytest
# Two pytest-xdist workers, a test module each at a time (its module fixtures stay on one worker), each
# with servers of its own: the integration tier mostly waits on its servers, so two halve its time.
PARALLEL := -n 2 --dist loadfile

.PHONY: help
help: ## Show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: install
install: .venv/.installed ## Install Python dependencies from the lock file into .venv (uses uv)
.venv/.installed: pyproject.toml */pyproject.toml uv.lock
	@command -v uv >/dev/null || python3 -m pip install --quiet uv
	@# Compiled once here (~15 s of CPU on 2 cores) rather than by each of the first processes that import
	@# a module, several at a time when the tiers start together.
	uv sync --frozen --all-packages --python python3.11 --compile-bytecode
	@touch $@

.PHONY: system-deps
system-deps: ## Debian packages the tests need (headless Chromium for the dashboard tests)
	@command -v chromium >/dev/null || { echo "installing chromium (apt)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

.PHONY: provision
provision: ## Build/cached Kubernetes binaries (etcd, kube-apiserver, kube-controller-manager, helm)
	bash hack/provision-kube.sh

.PHONY: provision-node
provision-node: ## Also build the local node's binaries (kube-scheduler, kubelet, kube-proxy, crictl, CoreDNS, pause, kube-router)
	bash hack/provision-kube.sh kube-apiserver kube-controller-manager etcd helm \
		kube-scheduler kubelet kube-proxy crictl coredns pause kube-router

.PHONY: image
image: ## Build the workspace image offline (starts its own dockerd; base made with debootstrap)
	bash hack/build-workspace-image.sh

.PHONY: images
images: ## Build every image the local cluster runs (workspace, operator, API, gateway); cached by inputs
	bash hack/build-images.sh

.PHONY: dev
dev: install ## Bring the platform up in a local single-node cluster (needs root); Ctrl-C stops it
	$(PY) -m agentry_localcluster.cli up

.PHONY: dev-status
dev-status: install ## What the local cluster runs and whether it is healthy
	$(PY) -m agentry_localcluster.cli status

.PHONY: dev-doctor
dev-doctor: install ## `agentry doctor` against the running `make dev`: LLM channels, Firestore, API server, operator, API
	$(PY) -m agentry_localcluster.cli doctor

.PHONY: dev-down
dev-down: install ## Stop a running (or detached, or killed) `make dev` and remove what it left on the host
	$(PY) -m agentry_localcluster.cli down

.PHONY: lint
lint: install ## ruff, mypy --strict, the import contracts between components (lint-imports), the README layout table, the operator's typing bar
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy
	.venv/bin/lint-imports --no-cache
	$(PY) hack/layout.py --check
	$(PY) hack/typing_bar.py

# $(call timed,<what>,<command>): run it, then print how long it took and its exit code.
timed = t=$$(date +%s); $(2); rc=$$?; echo "[make test] $(1): $$(( $$(date +%s) - t )) s (exit $$rc)"; exit $$rc

.PHONY: prepare
prepare: install system-deps ## One-time builds every tier needs (Kubernetes + node binaries, helm, images); cached, progress shown
	@$(call timed,one-time builds,$(PY) -m agentry_localcluster.prepare)

.PHONY: test
test: install system-deps ## All test tiers: lint, unit, integration, chaos, e2e, each as soon as its one-time builds are done (starts every server it needs)
	@$(PY) -m agentry_localcluster.tiers

.PHONY: test-unit
test-unit: install ## Unit tier only (no servers)
	$(PYTEST) -m unit -q $(PARALLEL)

.PHONY: test-integration
test-integration: install ## Integration tier only (Firestore emulator, kube-apiserver + controller-manager)
	$(PYTEST) -m "integration and not chaos" -q $(PARALLEL)

.PHONY: test-chaos
test-chaos: install ## The long fault runs: the operator SIGKILLed for 5 minutes under 200 runs; the leader of two killed under 500
	$(PYTEST) -m chaos -q

.PHONY: test-e2e
test-e2e: install system-deps ## e2e tier only (images, the local node, the whole path)
	$(PYTEST) -m e2e -q

.PHONY: test-e2e-node
test-e2e-node: install ## Agents in real pods on the local node (tests/e2e/node; needs root)
	$(PYTEST) -m e2e -q tests/e2e/node

.PHONY: bench
bench: install ## Every benchmark, then one table in docs/benchmarks.md (LiteLLM into the cache dir, redis-server from apt)
	@command -v redis-server >/dev/null || { echo "installing redis-server (apt; LiteLLM's shared budget counters)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; }
	$(PY) -m bench.run_all

.PHONY: manifests
manifests: ## Regenerate the chart's CRD templates (from manifests/crds) and manifests/install.yaml
	bash hack/render-install.sh

.PHONY: check-manifests
check-manifests: ## Fail if the chart's CRD templates or manifests/install.yaml are stale
	bash hack/render-install.sh --check

.PHONY: bench-gateway
bench-gateway: install ## Gateway overhead per call (p50/p99) as a ratio to calling the provider directly
	$(PY) -m bench.gateway_overhead

.PHONY: doctor
doctor: install ## Check every channel (providers through the gateway, Firestore, API server, operator)
	.venv/bin/agentry doctor

.PHONY: crd-docs
crd-docs: install ## Regenerate docs/crd-reference.md from manifests/crds
	$(PY) -m agentry_testing.crddoc > docs/crd-reference.md
