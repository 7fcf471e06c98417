"""What a Blob Storage `Microsoft.Storage.BlobCreated` event looks like, and which subscriptions it matches.

Event Grid event schema: https://learn.microsoft.com/azure/event-grid/event-schema
Blob Storage events (fields of `data`, the example event): https://learn.microsoft.com/azure/event-grid/event-schema-blob-storage
Subscription filters (subjectBeginsWith / subjectEndsWith / isSubjectCaseSensitive / includedEventTypes):
https://learn.microsoft.com/azure/event-grid/subscription-creation-schema
"""

from __future__ import annotations

import itertools
import re
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

BLOB_CREATED = "Microsoft.Storage.BlobCreated"
VALIDATION_EVENT = "Microsoft.EventGrid.SubscriptionValidationEvent"
# Stands in for the storage account's ARM id; nothing reads the ids in it.
TOPIC = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/local/providers/Microsoft.Storage/storageAccounts/{account}"
SUBJECT = "/blobServices/default/containers/{container}/blobs/{blob}"
_NAME = re.compile(r"^[A-Za-z0-9-]{3,64}$")  # Event Grid's rule for event subscription names
# Event Grid's defaults; the local retry schedule is shorter (see delivery.Backoff).
DEFAULT_MAX_DELIVERY_ATTEMPTS = 30
DEFAULT_TTL_MINUTES = 1440
_SUPPORTED_FILTER_KEYS = {"includedEventTypes", "subjectBeginsWith", "subjectEndsWith", "isSubjectCaseSensitive"}


def event_time() -> str:
    """ISO 8601 UTC with seven fractional digits, as Event Grid writes eventTime."""
    now = time.time_ns()
    stamp = datetime.fromtimestamp(now // 1_000_000_000, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{(now % 1_000_000_000) // 100:07d}Z"


class Sequencer:
    """Opaque, ever-increasing strings per blob name (string order = event order), like `data.sequencer`.

    Prefixed with the start time so a restarted stand-in still sorts after the previous run."""

    def __init__(self) -> None:
        self._epoch = time.time_ns()
        self._counter = itertools.count(1)

    def next(self) -> str:
        return f"{self._epoch:016X}{next(self._counter):016X}"


def blob_created(*, account: str, container: str, blob: str, url: str, api: str, etag: str | None,
                 content_type: str | None, content_length: int | None, request_id: str | None,
                 client_request_id: str | None, sequencer: str) -> dict[str, Any]:
    data: dict[str, Any] = {"api": api}
    if client_request_id:
        data["clientRequestId"] = client_request_id
    data.update({
        "requestId": request_id or "", "eTag": etag or "", "contentType": content_type or "application/octet-stream",
        "contentLength": content_length, "blobType": "BlockBlob", "url": url, "sequencer": sequencer,
        "storageDiagnostics": {"batchId": str(uuid.uuid4())},
    })
    return {
        "topic": TOPIC.format(account=account),
        "subject": SUBJECT.format(container=container, blob=blob),
        "eventType": BLOB_CREATED,
        "id": str(uuid.uuid4()),
        "data": data,
        "dataVersion": "",
        "metadataVersion": "1",
        "eventTime": event_time(),
    }


def validation_event(code: str) -> dict[str, Any]:
    return {"id": str(uuid.uuid4()), "topic": TOPIC.format(account="devstoreaccount1"), "subject": "",
            "data": {"validationCode": code}, "eventType": VALIDATION_EVENT, "eventTime": event_time(),
            "metadataVersion": "1", "dataVersion": "2"}


@dataclass
class Counters:
    matched: int = 0  # events that passed the filters (counted when published, before any delivery)
    delivered: int = 0  # events the endpoint acknowledged with a success code
    failed_attempts: int = 0
    dropped: int = 0  # given up on: attempts or time to live used up, or a code Event Grid does not retry

    def as_json(self, pending: int) -> dict[str, int]:
        return {"matched": self.matched, "delivered": self.delivered, "failedAttempts": self.failed_attempts,
                "dropped": self.dropped, "pending": pending}


@dataclass
class Subscription:
    name: str
    endpoint_url: str
    subject_begins_with: str = ""
    subject_ends_with: str = ""
    case_sensitive: bool = False
    included_event_types: tuple[str, ...] | None = None  # None: every type
    max_delivery_attempts: int = DEFAULT_MAX_DELIVERY_ATTEMPTS
    ttl_minutes: int = DEFAULT_TTL_MINUTES
    counters: Counters = field(default_factory=Counters)

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(f"subscription name {self.name!r}: 3-64 characters, letters, digits and '-' only")
        if not self.endpoint_url.startswith(("http://", "https://")):
            raise ValueError(f"endpointUrl {self.endpoint_url!r} must be an http(s) URL")
        if not 1 <= self.max_delivery_attempts <= 30:
            raise ValueError("retryPolicy.maxDeliveryAttempts must be 1 to 30")
        if not 1 <= self.ttl_minutes <= 1440:
            raise ValueError("retryPolicy.eventTimeToLiveInMinutes must be 1 to 1440")

    def matches(self, event: dict[str, Any]) -> bool:
        if self.included_event_types is not None and event.get("eventType") not in self.included_event_types:
            return False
        subject, begins, ends = event.get("subject", ""), self.subject_begins_with, self.subject_ends_with
        if not self.case_sensitive:
            subject, begins, ends = subject.lower(), begins.lower(), ends.lower()
        return subject.startswith(begins) and subject.endswith(ends)

    @classmethod
    def from_json(cls, name: str, body: Any) -> Subscription:
        """The body of an Event Grid `eventSubscriptions` PUT (with or without the outer `properties`)."""
        if not isinstance(body, dict):
            raise ValueError("the body must be a JSON object")
        props = body.get("properties", body)
        destination = props.get("destination") or {}
        kind = str(destination.get("endpointType", "WebHook"))
        if kind.lower() != "webhook":
            raise ValueError(f"destination.endpointType {kind!r}: only WebHook endpoints are supported locally")
        url = (destination.get("properties") or {}).get("endpointUrl") or destination.get("endpointUrl")
        if not url:
            raise ValueError("destination.properties.endpointUrl is required")
        schema = props.get("eventDeliverySchema", "EventGridSchema")
        if schema != "EventGridSchema":
            raise ValueError(f"eventDeliverySchema {schema!r}: only EventGridSchema is supported locally")
        flt = props.get("filter") or {}
        unsupported = sorted(k for k, v in flt.items() if k not in _SUPPORTED_FILTER_KEYS and v)
        if unsupported:
            raise ValueError(f"filter keys {unsupported} are not supported locally "
                             f"(supported: {sorted(_SUPPORTED_FILTER_KEYS)})")
        retry = props.get("retryPolicy") or {}
        types = flt.get("includedEventTypes")
        return cls(name=name, endpoint_url=str(url), subject_begins_with=str(flt.get("subjectBeginsWith") or ""),
                   subject_ends_with=str(flt.get("subjectEndsWith") or ""),
                   case_sensitive=bool(flt.get("isSubjectCaseSensitive", False)),
                   included_event_types=tuple(types) if types else None,
                   max_delivery_attempts=int(retry.get("maxDeliveryAttempts", DEFAULT_MAX_DELIVERY_ATTEMPTS)),
                   ttl_minutes=int(retry.get("eventTimeToLiveInMinutes", DEFAULT_TTL_MINUTES)))

    def as_json(self, pending: int = 0) -> dict[str, Any]:
        body = subscription_body(
            self.endpoint_url, subject_begins_with=self.subject_begins_with, subject_ends_with=self.subject_ends_with,
            case_sensitive=self.case_sensitive,
            included_event_types=list(self.included_event_types) if self.included_event_types else None,
            max_delivery_attempts=self.max_delivery_attempts, ttl_minutes=self.ttl_minutes)
        properties = {"provisioningState": "Succeeded", "eventDeliverySchema": "EventGridSchema",
                      **body["properties"]}
        return {"name": self.name, "properties": properties, "stats": self.counters.as_json(pending)}


def subscription_body(endpoint_url: str, *, subject_begins_with: str = "", subject_ends_with: str = "",
                      case_sensitive: bool = False, included_event_types: list[str] | None = None,
                      max_delivery_attempts: int = DEFAULT_MAX_DELIVERY_ATTEMPTS,
                      ttl_minutes: int = DEFAULT_TTL_MINUTES) -> dict[str, Any]:
    """The PUT body the control API takes, shaped like Event Grid's own eventSubscriptions body."""
    flt: dict[str, Any] = {"subjectBeginsWith": subject_begins_with, "subjectEndsWith": subject_ends_with,
                           "isSubjectCaseSensitive": case_sensitive}
    if included_event_types:
        flt["includedEventTypes"] = included_event_types
    return {"properties": {
        "destination": {"endpointType": "WebHook", "properties": {"endpointUrl": endpoint_url}},
        "filter": flt,
        "retryPolicy": {"maxDeliveryAttempts": max_delivery_attempts, "eventTimeToLiveInMinutes": ttl_minutes},
    }}
