"""One local stack (Azurite, both emulators, the dev host) shared by the end-to-end tests."""

from __future__ import annotations

import pytest

from local.stack import Stack, StackOptions
from shared.adapters.services import build
from shared.pure.settings import load


@pytest.fixture(scope="package")
def stack(tmp_path_factory):
    options = StackOptions(workdir=tmp_path_factory.mktemp("stack"), pool="demo-pool:2:1", http_port=0,
                           batch_port=0, servicebus_port=0, persistent=False, watchdog_schedule="*/2 * * * * *",
                           extra_env={"BATCH_MAX_RETRIES": "0"})
    with Stack(options) as running:
        yield running


@pytest.fixture(scope="package")
def services(stack):
    return build(load(stack.app_settings()))
