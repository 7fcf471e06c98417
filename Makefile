# Everything installs into .venv and node_modules on first use, so a fresh clone needs no manual steps.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
NODE_STAMP := node_modules/.installed-stamp
# Older Batch clients, each in its own environment (tests/batch/client_venvs.py), for tests/batch/test_clients.py.
CLIENTS_STAMP := .venv-clients/.installed-stamp

.PHONY: install test lint bench demo clean

install: $(STAMP) $(NODE_STAMP) $(CLIENTS_STAMP)

$(STAMP): requirements.txt requirements-dev.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .
	@touch $@

$(CLIENTS_STAMP): $(STAMP) $(wildcard tests/batch/clients/*.txt)
	$(PY) -m tests.batch.client_venvs
	@touch $@

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

lint: $(STAMP)
	$(VENV)/bin/ruff check .

test: install lint
	$(PY) -m pytest

bench: install
	$(PY) -m bench

demo: install
	$(PY) -m local.demo

clean:
	rm -rf $(VENV) .venv-clients node_modules .pytest_cache .ruff_cache
