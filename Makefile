# Developer tasks. `make help` lists them; `make check` is what CI runs.
# Tools run from $(VENV) (default .venv, made by `make install`): `make test VENV=/other/venv`.

VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
IMAGE ?= provisioner:local
# Extra arguments for pytest, e.g. `make test ARGS="-k deploy -x"`.
ARGS ?=
LINT_PATHS := src tests bench

# The installed-environment marker: targets that need the venv build it on first use.
STAMP := $(VENV)/.provisioner-installed

.DEFAULT_GOAL := help
.PHONY: help install run serve test contract lint format typecheck bench bench-load bench-timeline bench-hostile bench-history \
	openapi openapi-check check \
	screenshots vendor-assets docker up down lock clean

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-14s %s\n", $$1, $$2}' \
		$(MAKEFILE_LIST)

install: ## create the venv (VENV, default .venv): the package, editable, with its pinned test tools
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -c requirements-dev.lock -e '.[test]'
	@touch $(STAMP)

$(STAMP): pyproject.toml requirements-dev.lock
	$(MAKE) install

run: $(STAMP) ## demo: SQLite + mock adapter, deploys examples/data-product.yaml
	$(BIN)/provisioner demo

serve: $(STAMP) ## run the service (settings from PROVISIONER_* variables)
	$(BIN)/provisioner serve

test: $(STAMP) ## run the tests (ARGS="..." passes options to pytest)
	$(BIN)/pytest $(ARGS)

contract: $(STAMP) ## schemathesis against the real service: the OpenAPI document tells the truth
	$(BIN)/pytest tests/contract -rP $(ARGS)

lint: $(STAMP) ## ruff lint + format check, and the layering contracts (import-linter)
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)
	$(BIN)/lint-imports

format: $(STAMP) ## apply ruff's fixes and formatting
	$(BIN)/ruff check --fix $(LINT_PATHS)
	$(BIN)/ruff format $(LINT_PATHS)

typecheck: $(STAMP) ## mypy --strict (settings in pyproject.toml)
	$(BIN)/mypy src/provisioner

bench: $(STAMP) ## run the benchmarks and print their figures (needs PostgreSQL for half)
	$(BIN)/python bench/run.py

bench-load: $(STAMP) ## 3 replicas on PostgreSQL, 200 concurrent deployments
	$(BIN)/python bench/load.py

bench-timeline: $(STAMP) ## one workload's phases and the service's CPU per thread (WORKLOAD=wide)
	$(BIN)/python bench/timeline.py --workload $(or $(WORKLOAD),wide)

bench-hostile: $(STAMP) ## how fast each hostile body is refused, and /healthz meanwhile
	$(BIN)/python bench/hostile.py

bench-history: $(STAMP) ## reads over 100,000 operations in PostgreSQL, and a purge
	$(BIN)/python bench/history.py

openapi: $(STAMP) ## write openapi/openapi.json from the code
	$(BIN)/python -m provisioner.api.openapi

openapi-check: $(STAMP) ## fail if openapi/openapi.json is out of date
	$(BIN)/python -m provisioner.api.openapi --check

check: lint typecheck test openapi-check ## everything CI runs

screenshots: $(STAMP) ## retake the README's dashboard screenshots into docs/ (needs chromium)
	PROVISIONER_SCREENSHOTS=docs $(BIN)/pytest tests/browser/test_screenshots.py -q

vendor-assets: ## refresh Swagger UI, ReDoc and dagre from npm (pinned in scripts/vendor-assets)
	scripts/vendor-assets

docker: ## build the production image as $(IMAGE)
	docker build --tag $(IMAGE) .

up: ## start postgres, the mock adapter and the service with docker compose
	docker compose up --build --detach

down: ## stop the compose stack (add `-v` by hand to drop the database volume)
	docker compose down

# The locks resolve against PyPI alone: the machine's pip configuration (extra indexes,
# find-links, constraints) is switched off so that what is pinned exists publicly.
# `make lock` keeps the current pins where pyproject.toml allows; to take newer releases:
# `make lock LOCK_ARGS=--upgrade`.
LOCK_ARGS ?=
LOCK_OPTS = --strip-extras --allow-unsafe --no-emit-index-url --no-emit-find-links \
	--index-url https://pypi.org/simple
RUNTIME_LOCK = --generate-hashes --output-file requirements.lock pyproject.toml
DEV_LOCK = --extra test --constraint requirements.lock --output-file requirements-dev.lock pyproject.toml
# $(call pip_compile,ARGS): run pip-compile from the throwaway venv $$tmp; the lock's header
# records the command.
pip_compile = env -u PIP_FIND_LINKS -u PIP_CONSTRAINT -u PIP_EXTRA_INDEX_URL -u PIP_INDEX_URL \
	PIP_CONFIG_FILE=/dev/null \
	CUSTOM_COMPILE_COMMAND="make lock  (PIP_CONFIG_FILE=/dev/null pip-compile $(strip $(LOCK_OPTS) $(1)))" \
	$$tmp/bin/pip-compile --quiet $(LOCK_OPTS) $(LOCK_ARGS) $(1)

lock: ## re-pin requirements.lock (runtime, hashed) and requirements-dev.lock (+ test extra)
	tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	$(PYTHON) -m venv $$tmp && $$tmp/bin/pip install --quiet pip-tools==7.6.2 && \
	$(call pip_compile,$(RUNTIME_LOCK)) && \
	$(call pip_compile,$(DEV_LOCK))

clean: ## remove build output, caches and the demo database (keeps the venv)
	rm -rf build dist src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
	rm -f provisioner-demo.db provisioner-demo.db-wal provisioner-demo.db-shm
	find src tests bench migrations -name __pycache__ -type d -prune -exec rm -rf {} +
