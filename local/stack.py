"""The whole local stand-in: Azurite (behind the blob events proxy, the Event Grid stand-in), the Batch
emulator, the Service Bus emulator and the dev host running function_app.py, each a child process on
127.0.0.1, started in order and stopped in reverse. Once the host serves, each blob trigger with source
EventGrid is subscribed to BlobCreated events, as infra/modules/eventgrid-subscriptions.bicep does in Azure."""

from __future__ import annotations

import json
import sys
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from azure.storage.blob import BlobServiceClient

from local.azurite import Azurite
from local.batch.control import EmulatorProcess, Endpoint
from local.blobevents import BLOB_CREATED, BlobEventsClient
from local.child import ReadyProcess, free_port
from local.servicebus.control import ServiceBusProcess
from shared.adapters.store import Store
from shared.pure.settings import DEFAULT_QUEUE

REPO = Path(__file__).resolve().parent.parent
ENDPOINTS_FILE = REPO / ".data" / "endpoints.json"
Progress = Callable[[str], None]


@dataclass
class StackOptions:
    workdir: Path = REPO / ".data" / "local"
    pool: str = "demo-pool:2:1"
    http_port: int = 7071
    batch_port: int = 8090
    servicebus_port: int = 5672
    persistent: bool = True  # keep queue messages and blobs across restarts (`orchestrator up`)
    watchdog_schedule: str = "*/5 * * * * *"
    extra_env: dict = field(default_factory=dict)


class Stack:
    def __init__(self, options: StackOptions | None = None, progress: Progress | None = None):
        self.options = options or StackOptions()
        self.progress = progress or (lambda _msg: None)
        self.azurite: Azurite | None = None
        self.batch: EmulatorProcess | None = None
        self.batch_endpoint: Endpoint | None = None
        self.servicebus: ServiceBusProcess | None = None
        self.servicebus_connection = ""
        self.host: ReadyProcess | None = None
        self.host_url = ""
        self.subscriptions: list[str] = []

    def app_settings(self) -> dict[str, str]:
        assert self.azurite and self.batch_endpoint
        return {
            "AzureWebJobsStorage": self.azurite.connection_string,
            "ServiceBusConnection": self.servicebus_connection,
            "JOB_REQUESTS_QUEUE": DEFAULT_QUEUE,
            "WATCHDOG_SCHEDULE": self.options.watchdog_schedule,
            "BATCH_ACCOUNT_URL": self.batch_endpoint.url,
            "BATCH_ACCOUNT_NAME": self.batch_endpoint.account,
            "BATCH_ACCOUNT_KEY": self.batch_endpoint.key,
            "FUNCTIONS_WORKER_RUNTIME": "python",
            "PYTHON_ENABLE_INIT_INDEXING": "1",  # as in Azure (infra/modules/functionapp.bicep): HTTP streams
            **self.options.extra_env,
        }

    def start(self) -> Stack:
        o = self.options
        work = o.workdir
        work.mkdir(parents=True, exist_ok=True)
        try:
            self.progress("starting Azurite (blob and queue storage)")
            self.azurite = Azurite(location=str(work / "azurite") if o.persistent else None, events=True,
                                   events_log=str(work / "blobevents.log")).start(timeout=60)
            # In Azure the Bicep creates the containers; here the stack does, before the host polls them.
            Store(BlobServiceClient.from_connection_string(self.azurite.connection_string)).ensure_containers()
            self.progress(f"starting the Batch emulator with pool {o.pool}")
            # The account's linked storage is the stack's Azurite: application packages added with
            # `python -m local.batch add-package --storage <AzureWebJobsStorage>` are deployed from there.
            self.batch = EmulatorProcess(work / "batch", [o.pool], port=o.batch_port, log_file=work / "batch.log",
                                         extra=["--app-storage", self.azurite.connection_string])
            self.batch_endpoint = self.batch.start()
            self.progress(f"starting the Service Bus emulator with queue {DEFAULT_QUEUE}")
            self.servicebus = ServiceBusProcess(work, [{
                "name": DEFAULT_QUEUE, "maxDeliveryCount": 5, "lockDuration": "PT60S",
                "requiresDuplicateDetection": True, "duplicateDetectionHistoryTimeWindow": "PT10M",
                "deadLetteringOnMessageExpiration": True}], o.servicebus_port,
                work / "servicebus" if o.persistent else None)
            self.servicebus_connection = self.servicebus.start().connection_string
            self.progress("starting the dev host with function_app.py")
            # A port fixed for the stack's life, even when asked for any: the subscriptions point at it, so a
            # restarted host (host.stop(); host.start()) gets its events again, as an app's URL stays put.
            port = o.http_port or free_port()
            self.host = ReadyProcess("dev host", [
                sys.executable, "-m", "local.host", "--app-dir", str(REPO), "--port", str(port),
                "--host-id", "local-stack"], "HOST_URL=", work / "host.log", env=self.app_settings())
            self.host_url = self.host.start()
            self.subscriptions = subscribe_blob_triggers(self.azurite.blob_events, self.host_url)
            self.progress(f"subscribed {', '.join(self.subscriptions) or 'no blob triggers'} to BlobCreated events")
            self.progress(f"all up: functions at {self.host_url}")
            return self
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        for part in (self.host, self.servicebus):
            if part:
                part.stop()
        if self.batch:
            self.batch.stop()
        if self.azurite:
            self.azurite.stop()

    def write_endpoints(self, path: Path = ENDPOINTS_FILE) -> None:
        """Let `orchestrator submit/status/...` find this stack. Only public development keys are in it."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({**self.app_settings(), "HOST_URL": self.host_url}, indent=2))

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def subscribe_blob_triggers(events: BlobEventsClient, host_url: str) -> list[str]:
    """One subscription per blob trigger with source EventGrid, named and filtered from what the host lists
    (`GET /admin/functions`): the local counterpart of infra/modules/eventgrid-subscriptions.bicep.
    Subscriptions live in the proxy's memory, so every start creates them again."""
    with urllib.request.urlopen(f"{host_url}/admin/functions", timeout=30) as response:
        functions = json.loads(response.read())
    names = []
    for function in functions:
        if "webhook" not in function:
            continue
        name = f"{function['name']}-blob-created".replace("_", "-")
        events.subscribe(name, function["webhook"], subject_begins_with=function["subjectBeginsWith"],
                         subject_ends_with=function["subjectEndsWith"], case_sensitive=True,
                         included_event_types=[BLOB_CREATED])
        names.append(name)
    return names
