# Everything installs into .venv and node_modules on first use, so a fresh clone needs no manual steps.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
NODE_STAMP := node_modules/.installed-stamp
BROWSER_STAMP := $(VENV)/.browser-stamp
# `make test` runs pytest on this many xdist workers (0: in one process, as a bare `pytest` does). The suite
# mostly waits on servers and subprocesses, so two workers roughly halve it on a 2-core machine. loadfile keeps
# each test file (and each package sharing a local stack) on one worker, tests/conftest.py; files are handed
# out in collection order, not most-tests-first, which would leave the few long Service Bus files for last.
PYTEST_WORKERS ?= 2
CLIENTS    := .venv-clients
# Older Batch clients, each in its own environment (tests/batch/client_venvs.py), for tests/batch/test_clients.py.
CLIENTS_STAMP := $(CLIENTS)/.installed-stamp
# One venv per azure-servicebus release the emulator is tested against (tests/servicebus/test_sdk_versions.py).
SB_VERSIONS := $(shell grep -v '^\#' tests/servicebus/clients/versions.txt)
SB_STAMPS  := $(foreach v,$(SB_VERSIONS),$(CLIENTS)/servicebus-$(v)/.installed-stamp)

.PHONY: install test lint bench demo clean

install: $(STAMP) $(NODE_STAMP) $(BROWSER_STAMP) $(CLIENTS_STAMP) $(SB_STAMPS)

$(STAMP): requirements.txt requirements-dev.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .
	@touch $@

$(CLIENTS_STAMP): $(STAMP) $(wildcard tests/batch/clients/*.txt)
	$(PY) -m tests.batch.client_venvs
	@touch $@

$(CLIENTS)/servicebus-%/.installed-stamp:
	@test -x $(@D)/bin/python || $(PYTHON) -m venv $(@D)
	$(@D)/bin/python -m pip install --quiet --disable-pip-version-check azure-servicebus==$*
	@touch $@

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

# Chromium for the browser tests (tests/browser), from the Debian packages: Playwright drives the system's
# Chromium, so no browser download of its own. Without apt-get, or without root or sudo, the tests say why
# they skip; the stamp is not written then, so a later `make install` tries again.
$(BROWSER_STAMP): $(STAMP)
	@if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then touch $@; \
	elif ! command -v apt-get >/dev/null 2>&1; then echo "no apt-get: Chromium not installed, browser tests will skip"; \
	else sudo=""; [ "$$(id -u)" = 0 ] || sudo="sudo -n"; \
	  if $$sudo apt-get update -qq && $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium \
	     >/dev/null; then touch $@; \
	  else echo "Chromium could not be installed (apt-get needs root or sudo): browser tests will skip"; fi; \
	fi

lint: $(STAMP)
	$(VENV)/bin/ruff check .

test: install lint
	$(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadfile --no-loadscope-reorder

bench: install
	$(PY) -m bench

demo: install
	$(PY) -m local.demo

clean:
	rm -rf $(VENV) $(CLIENTS) node_modules .pytest_cache .ruff_cache
