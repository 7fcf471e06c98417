"""The dev host: load the app, check every binding's settings, then start one listener per function."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from . import http_streams
from .bindings import BindingIO, with_bindings
from .blob_trigger import BlobListener, BlobScheduler
from .errors import HostConfigError
from .http_trigger import BIND, HttpServer
from .invoker import Invoker
from .loader import FunctionSpec, describe, import_app
from .servicebus_trigger import ServiceBusListener
from .settings import (
    DEFAULT_PORT,
    SettingResolver,
    effective_settings,
    read_host_json,
    read_local_settings,
)
from .storage import HostStorage, default_host_id
from .timer_trigger import TimerListener

log = logging.getLogger("local.host")

STORAGE_SETTING = "AzureWebJobsStorage"
SERVICE_BUS_DEFAULT = "AzureWebJobsServiceBus"


@dataclass
class HostOptions:
    """Knobs the Functions host hard-codes; tests shorten them."""

    host_id: str | None = None  # default: AzureFunctionsWebHost__hostid, else the machine name
    functions: tuple[str, ...] | None = None  # like `func start --functions a b`: only these
    blob_poll_interval: float = 2.0
    receive_wait: float = 1.0  # longest a Service Bus receive call blocks; bounds how fast stop() reacts
    connect_timeout: float = 15.0
    shutdown_timeout: float = 30.0  # in-flight invocations get this long to finish on stop()


class Host:
    """One Functions app served locally.

    In a test or a script: `host = Host(app_dir, env).start()` ... `host.stop()` (runs in a thread).
    Inside an event loop: `await host.astart()` ... `await host.astop()`.
    """

    def __init__(self, app_dir: str | os.PathLike, env: Mapping[str, str] | None = None, *,
                 port: int | None = None, options: HostOptions | None = None) -> None:
        self.app_dir = Path(app_dir).resolve()
        self.overrides = dict(env or {})
        self.requested_port = port
        self.options = options or HostOptions()
        self.port: int | None = None
        self.host_id = ""
        self.functions: list[FunctionSpec] = []
        self._listeners: list = []
        self._http: HttpServer | None = None
        self._storage: HostStorage | None = None
        self._invoker: Invoker | None = None
        self._bindings: BindingIO | None = None
        self._saved_env: dict[str, str | None] = {}
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._started = False

    @property
    def url(self) -> str:
        return f"http://{BIND}:{self.port}"

    def blob_webhooks(self) -> list[dict[str, str]]:
        """For each blob function with source EventGrid: the webhook Event Grid should POST to, and subject
        filters for its path. What `GET /admin/functions` also lists; what infra subscribes in Azure."""
        return self._http.blob_webhooks() if self._http else []

    # -- settings -------------------------------------------------------------------------------------

    def _apply_settings(self) -> dict[str, str]:
        """Make local.settings.json Values (unless already exported) and explicit overrides visible as
        environment variables, where the app's code reads them, as Core Tools does for the worker."""
        local = read_local_settings(self.app_dir)
        settings = effective_settings(local, os.environ, self.overrides)
        changes = {k: v for k, v in settings.items() if os.environ.get(k) != v}
        for name, value in changes.items():
            self._saved_env[name] = os.environ.get(name)
            os.environ[name] = value
        self._connection_strings = local.connection_strings
        self._local_port = local.port
        return settings

    def _restore_env(self) -> None:
        for name, value in self._saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._saved_env.clear()

    # -- lifecycle --------------------------------------------------------------------------------------

    async def astart(self) -> Host:
        started = time.monotonic()
        try:
            await self._astart()
        except BaseException:
            await self._teardown(0)
            raise
        self._started = True
        log.info("host started", extra={"url": self.url, "host_id": self.host_id,
                                        "functions": ",".join(s.name for s in self.functions),
                                        "startup_ms": int((time.monotonic() - started) * 1000)})
        return self

    async def _astart(self) -> None:
        host_json = read_host_json(self.app_dir)
        settings = self._apply_settings()
        resolver = SettingResolver(settings, self._connection_strings)
        self._added_path = str(self.app_dir) not in sys.path
        loaded_before = http_streams.extension_loaded()
        specs = describe(import_app(self.app_dir), resolver, self.options.functions)
        streams = http_streams.app_streams(specs, loaded_before)
        if streams:
            http_streams.check(specs)
        self.functions = specs
        self._bindings = BindingIO(host_json.queue_message_encoding)
        self._bindings.loop = asyncio.get_running_loop()
        for spec in specs:
            if spec.bindings:
                spec.callable = with_bindings(spec.callable, spec.name, spec.trigger, spec.bindings, self._bindings)
        self.host_id = self.options.host_id or default_host_id(settings)
        self._invoker = Invoker(str(self.app_dir))

        # Every setting is checked, and every listener built, before anything starts, so one run reports the
        # first problem by name. Building does no I/O.
        first = next((s for s in specs if s.trigger_type in ("timerTrigger", "blobTrigger")), None)
        if first is not None:
            self._storage = HostStorage(resolver.connection(STORAGE_SETTING, STORAGE_SETTING, first.name,
                                                            first.trigger["name"]))
        listeners = []
        # One for all blob functions: maxDegreeOfParallelism is app-wide.
        scheduler = BlobScheduler(host_json.blobs.max_degree_of_parallelism)
        for spec in specs:
            binding = spec.trigger["name"]
            if spec.trigger_type == "serviceBusTrigger":
                name = spec.trigger.get("connection") or SERVICE_BUS_DEFAULT
                conn = resolver.connection(name, SERVICE_BUS_DEFAULT, spec.name, binding)
                listeners.append(ServiceBusListener(spec, conn, name, host_json.service_bus, self._invoker,
                                                    self.options.receive_wait, self.options.connect_timeout))
            elif spec.trigger_type == "blobTrigger":
                conn = resolver.connection(spec.trigger.get("connection"), STORAGE_SETTING, spec.name, binding)
                listeners.append(BlobListener(spec, conn, host_json.blobs, self._invoker, self._storage,
                                              self.host_id, self.options.blob_poll_interval, scheduler))
            elif spec.trigger_type == "timerTrigger":
                listeners.append(TimerListener(spec, self._invoker, self._storage, self.host_id))

        if self._storage is not None:
            try:
                await asyncio.wait_for(self._storage.ensure(), self.options.connect_timeout)
            except Exception as exc:
                raise HostConfigError(f"cannot reach the storage account in {STORAGE_SETTING} "
                                      f"({type(exc).__name__}); start Azurite or fix the setting") from None
        for listener in listeners:
            self._listeners.append(listener)
            await listener.start()

        port = self.requested_port if self.requested_port is not None else (self._local_port or DEFAULT_PORT)
        webhooks = {x.spec.function_id: x for x in self._listeners if isinstance(x, BlobListener) and x.event_driven}
        self._http = HttpServer([s for s in specs if s.trigger_type == "httpTrigger"], host_json.route_prefix,
                                self._invoker, port, self.host_id, webhooks, streams)
        self.port = await self._http.start(specs, self.options.shutdown_timeout)
        self._http.ready = True

    async def astop(self, timeout: float | None = None) -> None:
        """Stop taking new work, let running invocations finish up to the deadline, then close everything."""
        await self._teardown(self.options.shutdown_timeout if timeout is None else timeout)

    async def _teardown(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for listener in self._listeners:
            await listener.stop_receiving()
        left = 0
        for listener in self._listeners:
            left += await listener.drain(deadline - time.monotonic())
        if left:
            log.warning("shutdown deadline passed with invocations still running; their messages and blobs "
                        "will be retried", extra={"running": left, "timeout_s": timeout})
        if self._http:
            await self._http.stop()
            self._http = None
        for listener in self._listeners:
            await listener.close()
        self._listeners.clear()
        if self._storage:
            await self._storage.close()
            self._storage = None
        if self._invoker:
            self._invoker.close(wait=not left)
            self._invoker = None
        if self._bindings:
            await self._bindings.close()
            self._bindings = None
        self._restore_env()
        if getattr(self, "_added_path", False):
            with contextlib.suppress(ValueError):
                sys.path.remove(str(self.app_dir))
            self._added_path = False
        if self._started:
            log.info("host stopped", extra={"host_id": self.host_id})
        self._started = False

    # -- blocking API, for tests and the CLI -------------------------------------------------------------

    def start(self, timeout: float = 60.0) -> Host:
        """Run the host on its own event loop thread; return once it serves (or raise why it cannot)."""
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="local-host", daemon=True)
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self.astart(), self._loop)
        try:
            future.result(timeout)
        except BaseException:
            future.cancel()
            self._end_loop()
            raise
        return self

    def stop(self, timeout: float | None = None) -> None:
        if self._loop is None:
            return
        wait = (self.options.shutdown_timeout if timeout is None else timeout) + 30
        try:
            asyncio.run_coroutine_threadsafe(self.astop(timeout), self._loop).result(wait)
        finally:
            self._end_loop()

    def _end_loop(self) -> None:
        loop, self._loop = self._loop, None
        if loop is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        if self._thread:
            self._thread.join(30)
        loop.close()

    def __enter__(self) -> Host:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
