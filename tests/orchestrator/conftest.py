"""The function app wired to the Batch emulator and Azurite, its functions invoked with the payload
objects the Python worker would pass."""

from __future__ import annotations

import importlib.util
import json
import os
import uuid
from datetime import UTC, datetime
from pathlib import Path

import azurefunctions.extensions.bindings.blob as ext_blob
import pytest
from azure.functions.servicebus import ServiceBusMessage
from azure.storage.blob import BlobClient

from local.batch.control import EmulatorProcess, Endpoint
from local.host.payloads import blob_argument
from shared.adapters import services as services_module
from shared.adapters.services import Services, build
from shared.pure.settings import load

REPO = Path(__file__).resolve().parents[2]


# Package scope, not session: these settings are exported to os.environ, and the dev host (tests/host) lets
# exported settings win over local.settings.json, so they must be gone once this package's tests are done. With
# session scope, `pytest tests/orchestrator tests/host` (or an xdist worker that ran this package first) started
# the host tests' apps against this package's emulators.
@pytest.fixture(scope="package")
def app_env(batch_emulator, azurite, servicebus):
    values = {
        "BATCH_ACCOUNT_URL": batch_emulator.url,
        "BATCH_ACCOUNT_NAME": batch_emulator.account,
        "BATCH_ACCOUNT_KEY": batch_emulator.key,
        "AzureWebJobsStorage": azurite.connection_string,
        "ServiceBusConnection": servicebus.connection_string,
        "JOB_REQUESTS_QUEUE": "job-requests",
        "WATCHDOG_SCHEDULE": "*/5 * * * * *",
    }
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    services_module.services.cache_clear()
    services_module.services().store.ensure_containers()
    yield values
    services_module.services.cache_clear()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="package")
def app(app_env):
    # Loaded by path under its own name: other tests import test apps that are also called function_app.
    spec = importlib.util.spec_from_file_location("orchestrator_function_app", REPO / "function_app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return {f.get_function_name(): f.get_user_function() for f in module.app.get_functions()}


@pytest.fixture
def svc(app_env):
    return services_module.services()


@pytest.fixture
def own_emulator(tmp_path, azurite) -> Endpoint:
    """A Batch emulator of this test's own (its endpoint: the test may set its faults), its linked storage
    (application packages) the session's Azurite."""
    emulator = EmulatorProcess(tmp_path / "workspace", ["pool-2x1:2:1", "pool-empty:0"],
                               log_file=tmp_path / "batch.log", extra=["--app-storage", azurite.connection_string])
    try:
        yield emulator.start()
    finally:
        emulator.stop()


@pytest.fixture
def own_batch(app_env, own_emulator) -> Services:
    """Services on a Batch emulator of this test's own, for tests that move the watchdog's clock: a sweep
    hours or days ahead ends or deletes every managed job it sees, so it must see only this test's."""
    return services_on(app_env, own_emulator)


def services_on(app_env: dict, endpoint: Endpoint, **settings: str) -> Services:
    """The app's services on this Batch emulator, with these settings changed."""
    return build(load({**app_env, "BATCH_ACCOUNT_URL": endpoint.url, "BATCH_ACCOUNT_NAME": endpoint.account,
                       "BATCH_ACCOUNT_KEY": endpoint.key, **settings}))


def sb_message(body: bytes | dict, message_id: str | None = None, props: dict | None = None,
               sequence_number: int | None = None) -> ServiceBusMessage:
    """message_id "" stands for a message sent without one."""
    raw = json.dumps(body).encode() if isinstance(body, dict) else body
    return ServiceBusMessage(body=raw, message_id=(message_id or None) if message_id is not None else uuid.uuid4().hex,
                             application_properties=props or {}, user_properties=props or {}, delivery_count=1,
                             content_type="application/json", enqueued_time_utc=datetime.now(UTC),
                             sequence_number=sequence_number)


def blob_event(name: str) -> BlobClient:
    """What the worker passes a `blob.BlobClient` trigger parameter: a client built by the extension's
    converter from the connection setting (no content is read)."""
    def never() -> bytes:
        raise AssertionError("an SDK-type blob trigger must not download the content")

    return blob_argument(ext_blob.BlobClient, None, never, f"job-logs/{name}", "", {}, None)


def request(job_id: str, pool: str = "pool-2x1", tasks: int = 4, **extra) -> dict:
    body = {
        "jobId": job_id, "poolId": pool, "timeout": "PT30M",
        "preparation": {"commandLine": "/bin/bash -c 'echo $AZ_BATCH_NODE_ID > $AZ_BATCH_NODE_SHARED_DIR/prep.txt'"},
        "release": {"commandLine": "/bin/bash -c 'cat $AZ_BATCH_NODE_SHARED_DIR/prep.txt'"},
        "taskFactory": {"type": "parametricSweep", "start": 1, "end": tasks, "idFormat": "task-{0}",
                        "commandLine": "/bin/bash -c 'echo task $AZ_BATCH_TASK_ID; echo ERROR sample >&2'"},
        "collect": {"logs": ["job-1/*/wd/*.log"], "crashDumps": ["job-1/*/wd/core*"]},
    }
    body.update(extra)
    return body
