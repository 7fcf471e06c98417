"""A real browser on the report page: Chromium from the Debian packages (`make install` installs it),
driven by Playwright's Python package through the system Chromium, against a local stack of its own."""

from __future__ import annotations

import os
import shutil

import pytest

from shared.adapters.services import build
from shared.pure.settings import load
from tests.fixtures.stack import local_stack

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")


def chromium_path() -> str | None:
    explicit = os.environ.get("CHROMIUM")
    if explicit:
        return explicit
    return next((found for name in CHROMIUM_NAMES if (found := shutil.which(name))), None)


@pytest.fixture(scope="package")
def browser():
    path = chromium_path()
    if path is None:
        pytest.skip("Chromium is not installed: `make install` installs it with `apt-get install chromium`, which "
                    "needs Debian or Ubuntu and root (or sudo); set CHROMIUM to a Chromium binary otherwise")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        # Playwright adds --headless; the rest as the project runs Chromium anywhere (CI containers as root).
        launched = playwright.chromium.launch(executable_path=path, headless=True,
                                              args=["--no-sandbox", "--disable-background-networking"])
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture(scope="package")
def stack(tmp_path_factory):
    yield from local_stack(tmp_path_factory, "browser-stack")


@pytest.fixture(scope="package")
def services(stack):
    return build(load(stack.app_settings()))
