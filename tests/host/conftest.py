"""Fixtures for the dev host tests: a private Service Bus emulator, the test app copied into tmp with a
local.settings.json pointing at the emulators, and a factory that starts hosts and always stops them."""

from __future__ import annotations

import json
import shutil
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from local.host import Host, HostOptions
from tests.fixtures.servicebus import Emulator, start_emulator

APP = Path(__file__).parent / "app"


def call(url: str, method: str = "GET", body: bytes | None = None, headers: dict | None = None):
    """One HTTP request; an error status is an answer (status, headers, body), not an exception."""
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()

QUEUES = [
    {"name": "host-ok", "lockDuration": "PT30S"},
    {"name": "host-fail", "maxDeliveryCount": 3, "lockDuration": "PT30S"},
    # A lock shorter than the function runs: only lock renewal keeps the message from coming back.
    # 5 s is Service Bus's minimum lock; AutoLockRenewer checks once a second, so shorter would not renew.
    {"name": "host-slow", "lockDuration": "PT5S", "maxDeliveryCount": 10},
    {"name": "host-renew", "lockDuration": "PT5S", "maxDeliveryCount": 10},  # renew_app, four at a time
    {"name": "host-out"},  # Service Bus output binding
    {"name": "host-forward", "maxDeliveryCount": 2},  # trigger with blob input and $return queue output
]


TOPICS = [{"name": "host-events", "subscriptions": [{"name": "audit"}, {"name": "other"}]}]


@pytest.fixture(scope="session")
def host_servicebus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    emulator = start_emulator(tmp_path_factory.mktemp("host-servicebus"), QUEUES, topics=TOPICS)
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture
def records(tmp_path: Path) -> Path:
    folder = tmp_path / "records"
    folder.mkdir()
    return folder


def read_records(folder: Path, function: str) -> list[dict]:
    path = folder / f"{function}.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture
def make_app(tmp_path: Path, records: Path) -> Callable[..., Path]:
    """Copy the test app into tmp and write its local.settings.json from the given Values."""

    def make(values: dict[str, str], source: Path = APP) -> Path:
        app_dir = tmp_path / source.name
        app_dir.mkdir(exist_ok=True)
        for name in ("function_app.py", "host.json"):
            shutil.copy(source / name, app_dir / name)
        settings = {"IsEncrypted": False,
                    "Values": {"FUNCTIONS_WORKER_RUNTIME": "python", "RECORD_DIR": str(records), **values}}
        (app_dir / "local.settings.json").write_text(json.dumps(settings, indent=2))
        return app_dir

    return make


@pytest.fixture
def container_name() -> str:
    return f"host-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def app_dir(make_app, azurite_connection_string: str, host_servicebus: Emulator, container_name: str) -> Path:
    return make_app({
        "AzureWebJobsStorage": azurite_connection_string,
        "ServiceBusConnection": host_servicebus.connection_string,
        "OK_QUEUE": "host-ok", "FAIL_QUEUE": "host-fail", "SLOW_QUEUE": "host-slow",
        "OUT_QUEUE": "host-out", "FORWARD_QUEUE": "host-forward", "STORAGE_QUEUE": container_name,
        "EVENTS_TOPIC": "host-events",
        "BLOB_CONTAINER": container_name,
    })


@pytest.fixture
def event_container() -> str:
    return f"hostev-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def events_app_dir(make_app, events_azurite, event_container: str, container_name: str) -> Path:
    """The test app against the Azurite behind the blob events proxy (its Event Grid stand-in)."""
    return make_app({"AzureWebJobsStorage": events_azurite.connection_string, "EVENT_CONTAINER": event_container,
                     "BLOB_CONTAINER": container_name})


@pytest.fixture
def host_id() -> str:
    # Timer status and blob receipts are per host id: a fresh one keeps tests from seeing each other's.
    return f"test-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def start_host(host_id: str) -> Iterator[Callable[..., Host]]:
    started: list[Host] = []

    def start(app_dir: Path, *functions: str, env: dict[str, str] | None = None, port: int = 0, **options) -> Host:
        options.setdefault("host_id", host_id)
        options.setdefault("blob_poll_interval", 0.1)
        options.setdefault("receive_wait", 0.5)
        options.setdefault("shutdown_timeout", 10.0)
        host = Host(app_dir, env, port=port, options=HostOptions(functions=functions or None, **options))
        started.append(host)
        return host.start()

    try:
        yield start
    finally:
        for host in started:
            host.stop()
