"""Input and output bindings: blob input and output, Service Bus queue or topic output, storage queue output.

As in the Functions host and the Python worker: input bindings are read before the function runs and
handed over as the worker builds them (the blob as an `InputStream`, `str`/`bytes` when annotated so, an
SDK client for an SDK type, `None` when the blob does not exist); output parameters are `func.Out[T]`
objects (or the function's return value for `$return`), encoded after the function returns with the
azure-functions library's own converters, and written only if it succeeded. Paths and queue names take
binding expressions: `{name}` from the trigger (blob path captures, route and query parameters, Service
Bus message metadata, properties of a JSON body), `{rand-guid}`, `{DateTime}`, `{sys.randguid}` and
`{sys.utcnow}`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import inspect
import json
import re
import typing
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import azure.functions as func
from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.functions.blob import BlobConverter
from azure.functions.queue import QueueMessageOutConverter
from azure.functions.servicebus import ServiceBusMessageOutConverter

from .errors import HostConfigError

STORAGE_SETTING = "AzureWebJobsStorage"
SERVICE_BUS_SETTING = "AzureWebJobsServiceBus"
# (binding type, direction) the dev host serves, and the connection setting each defaults to.
SUPPORTED = {("blob", "in"): STORAGE_SETTING, ("blob", "out"): STORAGE_SETTING,
             ("serviceBus", "out"): SERVICE_BUS_SETTING, ("queue", "out"): STORAGE_SETTING}
# What to use instead, named as the user knows it, for bindings people are likely to have.
_SDK_FOR = {"cosmosDB": "azure-cosmos", "eventHub": "azure-eventhub", "table": "azure-data-tables",
            "eventGrid": "azure-eventgrid", "blob": "azure-storage-blob", "queue": "azure-storage-queue",
            "serviceBus": "azure-servicebus", "sql": "mssql-python", "signalR": "azure-messaging-webpubsubservice"}
_EXPRESSION = re.compile(r"\{([^{}]+)\}")


@dataclass
class BindingSpec:
    """One input or output binding of a function, settings resolved, connection looked up."""

    name: str
    type: str
    direction: str  # "in" or "out"
    target: str  # blob path, or queue name
    connection: str  # the connection string
    connection_name: str  # the setting it came from (the SDK-type blob converter reads it again)
    data_type: str | None = None
    param_type: Any = None
    topic: bool = False  # a Service Bus output to a topic rather than a queue

    @property
    def is_return(self) -> bool:
        return self.name == "$return"


def unsupported_message(function: str, binding: dict) -> str:
    kind, direction = binding["type"], str(binding.get("direction", "")).lower()
    sdk = _SDK_FOR.get(kind)
    instead = (f"call the service from the function's code with its Python SDK ({sdk})" if sdk
               else "call the service from the function's code with its Python SDK")
    supported = ", ".join(f"{t} {d}put" for t, d in SUPPORTED)
    return (f"function {function!r}, binding {binding['name']!r}: {kind} {direction}put bindings are not supported "
            f"by the dev host; remove the binding and {instead}, with the connection string from an app "
            f"setting. Supported here: the triggers, and {supported} bindings.")


def describe_binding(function: str, binding: dict, param_types: Mapping[str, Any], resolver) -> BindingSpec:
    """Check one non-trigger binding as the worker and host would, at start-up; raise HostConfigError."""
    kind = binding["type"]
    direction = str(binding.get("direction", "")).lower()
    name = binding["name"]
    where = f"function {function!r}, binding {name!r}"
    if (kind, direction) not in SUPPORTED:
        raise HostConfigError(unsupported_message(function, binding))
    target = binding.get("path") if kind == "blob" else binding.get("queueName") or binding.get("topicName")
    if not target:
        raise HostConfigError(f"{where}: {'path' if kind == 'blob' else 'queue_name'} is empty")
    if kind == "blob" and "/" not in target.strip("/"):
        raise HostConfigError(f"{where}: path {target!r} must be 'container/blob', e.g. 'outputs/{{name}}.json'")
    param_type = param_types.get(name)
    if name == "$return":
        pass
    elif name not in param_types:
        raise HostConfigError(f"{where}: the Python function has no parameter named {name!r} (arg_name)")
    elif direction == "out" and not _is_out(param_type):
        # The worker's rule: an output parameter is set through func.Out.
        raise HostConfigError(f"{where}: an output binding's parameter must be annotated func.Out[...] "
                              f"(e.g. `{name}: func.Out[str]`), then set with {name}.set(value); or name the "
                              "binding $return and return the value")
    setting = binding.get("connection") or SUPPORTED[(kind, direction)]
    connection = resolver.connection(setting, SUPPORTED[(kind, direction)], function, name)
    return BindingSpec(name=name, type=kind, direction=direction, target=target, connection=connection,
                       connection_name=setting, data_type=binding.get("dataType"),
                       topic=kind == "serviceBus" and not binding.get("queueName") and bool(binding.get("topicName")),
                       param_type=typing.get_args(param_type)[0] if _is_out(param_type) and
                       typing.get_args(param_type) else param_type)


def _is_out(annotation: Any) -> bool:
    origin = typing.get_origin(annotation) or annotation
    return isinstance(origin, type) and issubclass(origin, func.Out)


class Out(func.Out):
    """What the worker hands an output parameter: set() it, the host writes it after the function returns."""

    def __init__(self) -> None:
        self._value: Any = None

    def set(self, val: Any) -> None:
        self._value = val

    def get(self) -> Any:
        return self._value


# -- binding data ------------------------------------------------------------------------------------


def binding_data(trigger: dict, argument: Any) -> dict[str, Any]:
    """What `{name}` in a binding can refer to, from the trigger's argument as the function receives it."""
    data: dict[str, Any] = {}
    body = None
    if isinstance(argument, func.HttpRequest):
        data.update({"query": dict(argument.params), "headers": dict(argument.headers)})
        data.update(argument.params)
        data.update(argument.route_params)
        body = argument.get_body()
    elif isinstance(argument, func.ServiceBusMessage):
        data.update(argument.metadata or {})
        body = argument.get_body()
    elif trigger.get("type") == "blobTrigger":
        blob_name = getattr(argument, "blob_name", None) or (getattr(argument, "name", "") or "").partition("/")[2]
        from .blob_trigger import BlobPath  # only for its path matcher

        path = BlobPath.parse(trigger["path"])
        found = path.pattern.fullmatch(blob_name or "")
        if found:
            data.update(found.groupdict())
        data["BlobTrigger"] = f"{path.container}/{blob_name}"
    if body:
        with contextlib.suppress(ValueError, UnicodeDecodeError):
            parsed = json.loads(body)
            if isinstance(parsed, dict):
                for key, value in parsed.items():
                    data.setdefault(key, value)
    return data


def expand(template: str, data: Mapping[str, Any], where: str) -> str:
    """Resolve `{...}` binding expressions in a path or queue name, as the host does (names ignore case)."""
    lowered = {str(k).lower(): v for k, v in data.items()}

    def lookup(match: re.Match) -> str:
        key = match.group(1).strip()
        low = key.lower()
        if low in ("rand-guid", "sys.randguid"):
            return str(uuid.uuid4())
        if low == "datetime":
            return datetime.now(UTC).strftime("%Y-%m-%dT%H-%M-%SZ")
        if low == "sys.utcnow":
            return datetime.now(UTC).isoformat()
        value: Any = lowered
        for part in low.split("."):
            if not isinstance(value, Mapping):
                value = None
                break
            value = {str(k).lower(): v for k, v in value.items()}.get(part)
        if value is None or isinstance(value, Mapping | list):
            raise ValueError(f"{where}: no value for the binding expression {{{key}}} (from the trigger: "
                             f"{', '.join(sorted(map(str, data))) or 'nothing'})")
        return str(value)

    return _EXPRESSION.sub(lookup, template)


# -- I/O ------------------------------------------------------------------------------------------------


class BindingIO:
    """The clients the bindings write and read with, on the host's event loop, closed with the host."""

    def __init__(self, queue_encoding: str = "base64") -> None:
        self.queue_encoding = queue_encoding
        self._blob: dict[str, Any] = {}
        self._queues: dict[str, Any] = {}
        self._servicebus: dict[str, Any] = {}
        self._senders: dict[tuple[str, str], tuple[Any, asyncio.Lock]] = {}
        self._created: set[tuple[str, str, str]] = set()
        self.loop: asyncio.AbstractEventLoop | None = None

    def _blob_service(self, conn: str):
        if conn not in self._blob:
            from azure.storage.blob.aio import BlobServiceClient

            self._blob[conn] = BlobServiceClient.from_connection_string(conn)
        return self._blob[conn]

    async def read_blob(self, binding: BindingSpec, path: str) -> Any:
        from .payloads import blob_argument, iso, sdk_converter

        container, _, name = path.strip("/").partition("/")
        client = self._blob_service(binding.connection).get_blob_client(container, name)
        if sdk_converter(binding.param_type) is not None:
            # An SDK type: the converter builds the client from the connection setting; nothing is read.
            return blob_argument(binding.param_type, binding.data_type, lambda: b"", path, client.url, {}, {},
                                 connection=binding.connection_name)
        try:
            downloader = await client.download_blob()
            content = await downloader.readall()
        except ResourceNotFoundError:
            return None  # the host binds a missing input blob as null
        props = downloader.properties
        settings = props.content_settings
        properties = {"Length": props.size, "ContentLength": props.size, "ETag": props.etag,
                      "BlobType": str(props.blob_type),
                      "ContentType": settings.content_type if settings else None,
                      "LastModified": iso(props.last_modified), "Created": iso(props.creation_time)}
        return blob_argument(binding.param_type, binding.data_type, lambda: content, path, client.url,
                             properties, dict(props.metadata or {}), connection=binding.connection_name)

    async def write(self, binding: BindingSpec, value: Any, target: str) -> None:
        if binding.type == "blob":
            await self._write_blob(binding, value, target)
        elif binding.type == "queue":
            await self._write_queue(binding, value, target)
        else:
            await self._write_servicebus(binding, value, target)

    async def _write_blob(self, binding: BindingSpec, value: Any, path: str) -> None:
        datum = _encode(BlobConverter, value, binding)
        data = datum.value.encode("utf-8") if datum.type == "string" else bytes(datum.value)
        container, _, name = path.strip("/").partition("/")
        service = self._blob_service(binding.connection)
        key = (binding.connection, "blob", container)
        if key not in self._created:  # the binding creates its container, as the host's does
            with contextlib.suppress(ResourceExistsError):
                await service.create_container(container)
            self._created.add(key)
        await service.get_blob_client(container, name).upload_blob(data, overwrite=True)

    async def _write_queue(self, binding: BindingSpec, value: Any, queue: str) -> None:
        from azure.storage.queue.aio import QueueServiceClient

        datum = _encode(QueueMessageOutConverter, value, binding)
        if datum.type == "json":
            parsed = json.loads(datum.value)
            items = parsed if isinstance(parsed, list) else [parsed]
            texts = [item["body"] if isinstance(item, dict) else str(item) for item in items]
        else:
            texts = [datum.value if datum.type == "string" else bytes(datum.value).decode("utf-8")]
        if binding.connection not in self._queues:
            self._queues[binding.connection] = QueueServiceClient.from_connection_string(binding.connection)
        client = self._queues[binding.connection].get_queue_client(queue.lower())
        key = (binding.connection, "queue", queue.lower())
        if key not in self._created:  # the binding creates its queue, as the host's does
            with contextlib.suppress(ResourceExistsError):
                await client.create_queue()
            self._created.add(key)
        for text in texts:
            # The queue extension's default messageEncoding is base64 (host.json extensions.queues).
            content = base64.b64encode(text.encode("utf-8")).decode() if self.queue_encoding == "base64" else text
            await client.send_message(content)

    async def _write_servicebus(self, binding: BindingSpec, value: Any, queue: str) -> None:
        from azure.servicebus import ServiceBusMessage
        from azure.servicebus.aio import ServiceBusClient

        datum = _encode(ServiceBusMessageOutConverter, value, binding)
        body = datum.value.encode("utf-8") if datum.type == "string" else bytes(datum.value)
        key = (binding.connection, ("topic:" if binding.topic else "") + queue)
        if key not in self._senders:
            if binding.connection not in self._servicebus:
                self._servicebus[binding.connection] = ServiceBusClient.from_connection_string(binding.connection)
            client = self._servicebus[binding.connection]
            sender = client.get_topic_sender(queue) if binding.topic else client.get_queue_sender(queue)
            self._senders[key] = (sender, asyncio.Lock())
        sender, lock = self._senders[key]
        async with lock:  # one sender per queue, one send at a time on it
            await sender.send_messages(ServiceBusMessage(body))

    async def close(self) -> None:
        for sender, _ in self._senders.values():
            with contextlib.suppress(Exception):
                await sender.close()
        for client in [*self._servicebus.values(), *self._queues.values(), *self._blob.values()]:
            with contextlib.suppress(Exception):
                await client.close()
        self._senders.clear()
        self._servicebus.clear()
        self._queues.clear()
        self._blob.clear()


def _encode(converter, value: Any, binding: BindingSpec):
    try:
        return converter.encode(value, expected_type=binding.param_type)
    except NotImplementedError:
        raise TypeError(f"output binding {binding.name!r} ({binding.type}) cannot take a "
                        f"{type(value).__name__}; set a str or bytes") from None


# -- the function with its bindings ----------------------------------------------------------------------


def with_bindings(fn: Callable, function: str, trigger: dict, bindings: list[BindingSpec],
                  io: BindingIO) -> Callable:
    """The user function, called with its inputs read and followed by its outputs written."""
    inputs = [b for b in bindings if b.direction == "in"]
    outputs = [b for b in bindings if b.direction == "out"]
    returns_output = any(b.is_return for b in outputs)

    async def before(kwargs: dict) -> tuple[dict, dict[str, Out]]:
        data = binding_data(trigger, kwargs.get(trigger["name"]))
        for binding in inputs:
            path = expand(binding.target, data, f"function {function!r}, binding {binding.name!r}")
            kwargs[binding.name] = await io.read_blob(binding, path)
        outs = {b.name: Out() for b in outputs if not b.is_return}
        kwargs.update(outs)
        return data, outs

    async def after(data: dict, outs: dict[str, Out], result: Any) -> None:
        for binding in outputs:
            value = result if binding.is_return else outs[binding.name].get()
            if value is None:
                continue  # nothing set: nothing written, as in the host
            target = expand(binding.target, data, f"function {function!r}, binding {binding.name!r}")
            await io.write(binding, value, target)

    if inspect.iscoroutinefunction(fn):
        @functools.wraps(fn)
        async def call_async(**kwargs):
            data, outs = await before(kwargs)
            result = await fn(**kwargs)
            await after(data, outs, result)
            return None if returns_output else result

        return call_async

    @functools.wraps(fn)
    def call(**kwargs):
        # Runs in the invoker's thread pool; the I/O runs on the host's loop, where the clients live.
        def on_loop(coro):
            return asyncio.run_coroutine_threadsafe(coro, io.loop).result()

        data, outs = on_loop(before(kwargs))
        result = fn(**kwargs)
        on_loop(after(data, outs, result))
        return None if returns_output else result

    return call
