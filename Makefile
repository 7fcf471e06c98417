# Everything installs into .venv and node_modules on first use, so a fresh clone needs no manual steps.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
NODE_STAMP := node_modules/.installed-stamp
# One venv per azure-servicebus release the emulator is tested against (tests/servicebus/test_sdk_versions.py).
CLIENTS    := .venv-clients
SB_VERSIONS := $(shell grep -v '^\#' tests/servicebus/clients/versions.txt)
SB_STAMPS  := $(foreach v,$(SB_VERSIONS),$(CLIENTS)/servicebus-$(v)/.installed-stamp)

.PHONY: install test lint bench demo clean

install: $(STAMP) $(NODE_STAMP) $(SB_STAMPS)

$(STAMP): requirements.txt requirements-dev.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .
	@touch $@

$(CLIENTS)/servicebus-%/.installed-stamp:
	@test -x $(@D)/bin/python || $(PYTHON) -m venv $(@D)
	$(@D)/bin/python -m pip install --quiet --disable-pip-version-check azure-servicebus==$*
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
	rm -rf $(VENV) $(CLIENTS) node_modules .pytest_cache .ruff_cache
