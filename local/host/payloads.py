"""Build the objects a function receives, through the azure-functions converters the Python worker uses.

The worker turns the host's gRPC data into `meta.Datum`s and calls each binding's InConverter; doing the
same here means functions see exactly the worker's types and field parsing, not look-alikes.
"""

from __future__ import annotations

import io
import json
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import azure.functions as func
from azure.functions import _abc as azf_abc
from azure.functions.blob import BlobConverter
from azure.functions.blob import InputStream as WorkerInputStream
from azure.functions.http import HttpRequestConverter
from azure.functions.meta import Datum
from azure.functions.servicebus import ServiceBusMessageInConverter
from azure.functions.timer import TimerRequestConverter
from azure.servicebus.amqp import AmqpMessageBodyType


def iso(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat() if moment else None


def _text(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


def _properties(props: Mapping | None) -> dict:
    # The SDK hands AMQP application properties back with bytes keys and values; the host sends JSON text.
    return {str(_text(k)): _text(v) for k, v in (props or {}).items()}


def _timespan(delta: timedelta | None) -> str | None:
    # The worker parses TimeToLive as HH:MM:SS; Service Bus's "never" (TimeSpan.MaxValue) is left out.
    if delta is None or delta >= timedelta(days=1):
        return None
    seconds = int(delta.total_seconds())
    return f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def service_bus_metadata(message: Any) -> dict[str, Datum]:
    """Trigger metadata as the Service Bus extension binds it, from an azure-servicebus ServiceBusReceivedMessage."""
    props = _properties(message.application_properties)
    # The host is .NET, whose SDK reports the first delivery as DeliveryCount 1; the AMQP header (and
    # the Python SDK) count from 0, so a function sees the same number here as in Azure.
    delivery_count = (message.delivery_count or 0) + 1
    strings = {
        "MessageId": message.message_id,
        "ContentType": message.content_type,
        "CorrelationId": message.correlation_id,
        "Label": message.subject,
        "Subject": message.subject,
        "To": message.to,
        "ReplyTo": message.reply_to,
        "ReplyToSessionId": message.reply_to_session_id,
        "SessionId": message.session_id,
        "PartitionKey": message.partition_key,
        "LockToken": str(message.lock_token) if message.lock_token else None,
        "DeadLetterSource": message.dead_letter_source,
        "DeadLetterReason": message.dead_letter_reason,
        "DeadLetterErrorDescription": message.dead_letter_error_description,
        "EnqueuedTimeUtc": iso(message.enqueued_time_utc),
        "ExpiresAtUtc": iso(message.expires_at_utc),
        "LockedUntil": iso(message.locked_until_utc),
        "ScheduledEnqueueTimeUtc": iso(message.scheduled_enqueue_time_utc),
        "TimeToLive": _timespan(message.time_to_live),
    }
    metadata = {k: Datum(v, "string") for k, v in strings.items() if v is not None}
    ints = {"DeliveryCount": delivery_count, "SequenceNumber": message.sequence_number,
            "EnqueuedSequenceNumber": message.enqueued_sequence_number,
            "State": int(message.state) if message.state is not None else None}
    metadata.update({k: Datum(v, "int") for k, v in ints.items() if v is not None})
    metadata["ApplicationProperties"] = Datum(json.dumps(props), "json")
    metadata["UserProperties"] = Datum(json.dumps(props), "json")
    return metadata


class UnbindableBody(Exception):
    """The message's body cannot be handed to the function: the invocation fails, as the host's does."""


def message_body(message: Any) -> bytes:
    """The body as the host's Service Bus extension binds it: data sections joined; an AMQP value section
    only when it is a string (its UTF-8 bytes); any other value, or a sequence body, refused with the
    extension's reason. The host then fails the invocation, so the message is abandoned, redelivered and
    dead-lettered after maxDeliveryCount
    (https://github.com/Azure/azure-sdk-for-net/blob/main/sdk/servicebus/Microsoft.Azure.WebJobs.Extensions.ServiceBus/src/Triggers/MessageToStringConverter.cs)."""
    kind = getattr(message, "body_type", None)
    body = message.body
    if kind == AmqpMessageBodyType.VALUE:
        # The SDK's AMQP decoder hands a string value over as its UTF-8 bytes, so a binary value (which the
        # extension refuses) cannot be told apart from it here: both are bound.
        if isinstance(body, str):
            return body.encode("utf-8")
        if isinstance(body, bytes):
            return body
        raise UnbindableBody(f"A message with a value type of {type(body).__name__} cannot be bound to a string.")
    if kind == AmqpMessageBodyType.SEQUENCE:
        raise UnbindableBody("A sequence body message cannot be bound to a string.")
    if body is None:
        return b""
    return body if isinstance(body, bytes) else b"".join(body)


def service_bus_message(message: Any) -> func.ServiceBusMessage:
    return ServiceBusMessageInConverter.decode(Datum(message_body(message), "bytes"),
                                               trigger_metadata=service_bus_metadata(message))


def timer_request(past_due: bool, status: dict | None) -> func.TimerRequest:
    payload = {"Schedule": {"AdjustForDST": True}, "ScheduleStatus": status, "IsPastDue": past_due}
    return TimerRequestConverter.decode(Datum(json.dumps(payload), "json"), trigger_metadata=None)


def http_request(method: str, url: str, headers: Mapping[str, str], query: Mapping[str, str],
                 route_params: Mapping[str, str], body: bytes) -> func.HttpRequest:
    value = {
        "method": Datum(method, "string"),
        "url": Datum(url, "string"),
        "headers": {k: Datum(v, "string") for k, v in headers.items()},
        "query": {k: Datum(v, "string") for k, v in query.items()},
        "params": {k: Datum(v, "string") for k, v in route_params.items()},
        "body": Datum(body, "bytes"),
    }
    return HttpRequestConverter.decode(Datum(value, "http"), trigger_metadata=None)


class LazyInputStream(WorkerInputStream):
    """The worker's InputStream, except the content is downloaded on the first read().

    A function that only needs the blob's name, uri or length (e.g. to enqueue it) never pays for the
    download; one that reads gets the same bytes the worker would have handed over.
    """

    def __init__(self, *, download: Callable[[], bytes], name: str, uri: str, length: int | None,
                 blob_properties: dict | None, metadata: dict | None) -> None:
        super().__init__(data=b"", name=name, uri=uri, length=length,
                         blob_properties=blob_properties, metadata=metadata)
        self._download = download
        self._loaded = False
        self._lock = threading.Lock()

    def _ensure(self) -> None:
        with self._lock:
            if not self._loaded:
                self._io = io.BytesIO(self._download())
                self._loaded = True

    @property
    def loaded(self) -> bool:
        return self._loaded

    def read(self, size: int = -1) -> bytes:
        self._ensure()
        return self._io.read(size)

    read1 = read


def blob_metadata(name: str, uri: str, properties: dict, metadata: dict | None) -> dict[str, Datum]:
    # `BlobTrigger` is the full "container/blob" path, which is what InputStream.name returns in Azure.
    return {"BlobTrigger": Datum(name, "string"), "Uri": Datum(uri, "string"),
            "Properties": Datum(json.dumps(properties), "json"),
            "Metadata": Datum(json.dumps(metadata or {}), "json")}


@dataclass(frozen=True)
class ModelBindingData:
    """What the host sends for an SDK-type binding instead of the content (the worker's gRPC message)."""

    content: str
    version: str = "1.0"
    source: str = "AzureStorageBlobs"
    content_type: str = "application/json"


def sdk_converter(param_type: Any):
    """The azurefunctions-extensions converter for an SDK-type annotation (e.g. blob.BlobClient), if any."""
    try:
        from azurefunctions.extensions.base import meta
    except ImportError:
        return None
    if not meta._ConverterMeta.check_supported_type(param_type):
        return None
    return meta._ConverterMeta.get("blobTrigger")


def blob_argument(param_type: Any, data_type: str | None, download: Callable[[], bytes], name: str,
                  uri: str, properties: dict, metadata: dict | None, connection: str = "AzureWebJobsStorage") -> Any:
    """What the blob parameter gets: an SDK client when annotated with an SDK type (built by the extension
    from the connection setting, as in the worker: no content is read), bytes or str when annotated so (the
    worker reads it eagerly then), otherwise an InputStream whose content loads lazily."""
    converter = sdk_converter(param_type)
    if converter is not None:
        from azurefunctions.extensions.base import Datum as ExtensionDatum

        container, _, blob_name = name.partition("/")
        content = json.dumps({"Connection": connection, "ContainerName": container, "BlobName": blob_name})
        datum = ExtensionDatum(ModelBindingData(content), "model_binding_data")
        return converter.decode(datum, trigger_metadata=blob_metadata(name, uri, properties, metadata),
                                pytype=param_type)
    kind = (data_type or "").lower()
    if param_type is str or (param_type is not bytes and kind == "string"):
        return download().decode("utf-8")
    if param_type is bytes or kind == "binary":
        return download()
    meta = blob_metadata(name, uri, properties, metadata)
    # Fields decoded by the worker's converter (so length/properties parse exactly as there) ...
    shape = BlobConverter.decode(Datum(b"", "bytes"), trigger_metadata=meta)
    # ... carried by a stream that defers the download.
    return LazyInputStream(download=download, name=shape.name, uri=shape.uri, length=shape.length,
                           blob_properties=shape.blob_properties, metadata=shape.metadata)


class _TraceContext(azf_abc.TraceContext):
    def __init__(self) -> None:
        self._parent = f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-01"

    @property
    def trace_state(self) -> str:
        return ""

    @property
    def trace_parent(self) -> str:
        return self._parent

    @property
    def attributes(self) -> dict[str, str]:
        return {}


class InvocationContext(func.Context):
    """`context: func.Context` as the worker passes it."""

    _local = threading.local()

    def __init__(self, invocation_id: str, function_name: str, function_directory: str) -> None:
        self._invocation_id = invocation_id
        self._function_name = function_name
        self._function_directory = function_directory
        self._trace = _TraceContext()

    @property
    def invocation_id(self) -> str:
        return self._invocation_id

    @property
    def thread_local_storage(self):
        return self._local

    @property
    def function_name(self) -> str:
        return self._function_name

    @property
    def function_directory(self) -> str:
        return self._function_directory

    @property
    def trace_context(self):
        return self._trace

    @property
    def retry_context(self):
        return None
