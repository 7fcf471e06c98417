"""One local stack (Azurite, both emulators, the dev host) shared by the end-to-end tests."""

from __future__ import annotations

import pytest

from shared.adapters.services import build
from shared.pure.settings import load
from tests.fixtures.stack import local_stack


@pytest.fixture(scope="package")
def stack(tmp_path_factory):
    yield from local_stack(tmp_path_factory, "stack")


@pytest.fixture(scope="package")
def services(stack):
    return build(load(stack.app_settings()))
