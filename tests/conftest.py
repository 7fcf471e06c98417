"""Server fixtures live in tests/fixtures/, one module per stand-in; each starts its server once per session.

`make test` runs the suite on two pytest-xdist workers (Makefile's PYTEST_WORKERS); every worker is a session of
its own, with its own servers on free ports and its own basetemp (pytest-of-*/pytest-N/popen-gwN)."""

from __future__ import annotations

import os

import pytest

pytest_plugins = [
    "tests.fixtures.azurite",
    "tests.fixtures.batch",
    "tests.fixtures.servicebus",
]

# pytest imports readline at start-up, and GNU readline puts the terminal's size in the C environment
# (COLUMNS=80, LINES=24 without a terminal) though not in os.environ; xdist's workers inherit that environment,
# so the CLI's console folds at 80 columns there and nowhere else. Workers get the main process's own values.
TERMINAL_SIZE = ("COLUMNS", "LINES")


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node) -> None:  # xdist, main process: what each worker is given
    node.workerinput["terminal_size"] = {name: os.environ.get(name) for name in TERMINAL_SIZE}


def pytest_configure(config: pytest.Config) -> None:
    given = getattr(config, "workerinput", {}).get("terminal_size")
    for name, value in (given or {}).items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


# Packages whose tests share one package-scoped local stack (tests/fixtures/stack.py: Azurite, both emulators
# and the dev host, some 5-20 s to start): under xdist all their tests go to one worker, so the stack starts
# once, not once per worker (nor again when a worker comes back to the package after other files).
ONE_WORKER_PACKAGES = ("tests/e2e", "tests/browser")


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """`--dist loadfile`, each test file on one worker (its module-scoped fixtures start once), with the
    packages above as one file each. Not xdist's own loadgroup: with pytest 9 its xdist_group marks are lost
    (xdist 3.8 rewrites Node._nodeid, which pytest 9 no longer reads), so every test would go its own way."""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class PackageAwareLoadFile(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return next((package for package in ONE_WORKER_PACKAGES if path.startswith(f"{package}/")), path)

    return PackageAwareLoadFile(config, log)
