# bridgehead: `make run` starts a server on the embedded defaults; `make test` checks everything.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: run test lint bench install install-test services openapi clean conformance

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[test]'
	touch $(VENV)/.installed $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

run: install
	$(BIN)/bridgehead serve

# Debian services the tests use (PostgreSQL; Slurm and munge). Installed and started only under
# CI=true or when asked with SERVICES=1; each test that needs one skips when it is absent.
services:
	@if [ "$$CI" = "true" ] || [ "$$SERVICES" = "1" ]; then bash scripts/test-services.sh; fi

lint: install-test
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy src

test: install-test services lint
	. ./.test-env 2>/dev/null; PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m pytest $(PYTEST_ARGS)

openapi: install
	$(BIN)/python -m bridgehead.openapi > openapi.json

# wrk (Debian) is the load generator bench/api.py judges its targets on; without it the bench falls
# back to its Python client.
bench: install-test
	@command -v wrk >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; } || true
	@for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

# The official CWL v1.2 conformance suite through bridgehead-cwl-runner (docs/conformance.md). The suite
# is not part of the project: CWL_SUITE names a checkout of common-workflow-language/cwl-v1.2.
conformance: install-test
	bash scripts/cwl-conformance.sh "$(CWL_SUITE)" $(CWLTEST_ARGS)

clean:
	rm -rf $(VENV) .bridgehead .pytest_cache .mypy_cache .ruff_cache .test-env
