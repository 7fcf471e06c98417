"""Queue declarations: defaults as Service Bus has them, read from flags or a JSON config file.

Config file shape (durations are ISO 8601 like Azure's ARM templates, or plain seconds):

    {"queues": [{"name": "job-requests", "maxDeliveryCount": 5, "lockDuration": "PT30S",
                 "defaultMessageTimeToLive": "P1D", "deadLetteringOnMessageExpiration": true,
                 "requiresDuplicateDetection": true, "duplicateDetectionHistoryTimeWindow": "PT10M"}]}
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

DEFAULT_MAX_DELIVERY_COUNT = 10
DEFAULT_LOCK_DURATION_S = 60.0
DEFAULT_DUPLICATE_WINDOW_S = 600.0
# Service Bus's "forever" default TTL, TimeSpan.MaxValue, is far beyond any local run.
DEFAULT_TTL_S = None

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,259}$")
_DURATION = re.compile(
    r"^P(?:(?P<d>\d+(?:\.\d+)?)D)?(?:T(?:(?P<h>\d+(?:\.\d+)?)H)?(?:(?P<m>\d+(?:\.\d+)?)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?$"
)


class ConfigError(ValueError):
    """The queue configuration is invalid; the message says which field and why."""


def parse_duration(value: object, field: str) -> float:
    """Seconds from an ISO 8601 duration (PT30S, P1DT2H) or a number of seconds."""
    if isinstance(value, bool):
        raise ConfigError(f"{field}: expected a duration, got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        match = _DURATION.match(value.strip().upper())
        if not match or value.strip().upper() in ("P", "PT"):
            raise ConfigError(f"{field}: {value!r} is not an ISO 8601 duration like PT30S")
        parts = {k: float(v) if v else 0.0 for k, v in match.groupdict().items()}
        seconds = parts["d"] * 86400 + parts["h"] * 3600 + parts["m"] * 60 + parts["s"]
    else:
        raise ConfigError(f"{field}: expected a duration, got {value!r}")
    if seconds <= 0:
        raise ConfigError(f"{field}: must be positive, got {value!r}")
    return seconds


@dataclass(frozen=True, slots=True)
class QueueConfig:
    name: str
    max_delivery_count: int = DEFAULT_MAX_DELIVERY_COUNT
    lock_duration_s: float = DEFAULT_LOCK_DURATION_S
    default_ttl_s: float | None = DEFAULT_TTL_S
    dead_letter_on_expiry: bool = False
    duplicate_detection: bool = False
    duplicate_window_s: float = DEFAULT_DUPLICATE_WINDOW_S

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.name):
            raise ConfigError(f"queue name {self.name!r}: use letters, digits, '.', '-', '_' (max 260)")
        if self.max_delivery_count < 1:
            raise ConfigError(f"queue {self.name}: maxDeliveryCount must be at least 1")
        if not 0 < self.lock_duration_s <= 300:
            raise ConfigError(f"queue {self.name}: lockDuration must be between 0 and 5 minutes, as in Service Bus")


_FIELDS = {
    "name",
    "maxDeliveryCount",
    "lockDuration",
    "defaultMessageTimeToLive",
    "deadLetteringOnMessageExpiration",
    "requiresDuplicateDetection",
    "duplicateDetectionHistoryTimeWindow",
}


# Service Bus queue properties the emulator does not implement: refused when on, never silently ignored.
_UNSUPPORTED = {
    "requiresSession": "sessions are not supported by the local emulator; declare the queue without sessions "
                       "(session receivers are refused with Service Bus's error for a queue without them)",
    "forwardTo": "auto-forwarding is not supported by the local emulator",
    "forwardDeadLetteredMessagesTo": "auto-forwarding is not supported by the local emulator",
    "enablePartitioning": "partitioned queues are not supported by the local emulator",
    "autoDeleteOnIdle": "auto-delete on idle is not supported by the local emulator",
}


def queue_from_dict(item: dict) -> QueueConfig:
    if not isinstance(item, dict) or "name" not in item:
        raise ConfigError(f"each queue needs at least a name, got {item!r}")
    unsupported = sorted(k for k in _UNSUPPORTED if item.get(k))
    if unsupported:
        raise ConfigError(f"queue {item['name']}: {', '.join(unsupported)}: {_UNSUPPORTED[unsupported[0]]}")
    unknown = set(item) - _FIELDS - set(_UNSUPPORTED)
    if unknown:
        raise ConfigError(f"queue {item['name']}: unknown field(s) {sorted(unknown)}; known: {sorted(_FIELDS)}")
    kwargs: dict = {"name": str(item["name"])}
    if "maxDeliveryCount" in item:
        if not isinstance(item["maxDeliveryCount"], int) or isinstance(item["maxDeliveryCount"], bool):
            raise ConfigError(f"queue {item['name']}: maxDeliveryCount must be an integer")
        kwargs["max_delivery_count"] = item["maxDeliveryCount"]
    if "lockDuration" in item:
        kwargs["lock_duration_s"] = parse_duration(item["lockDuration"], "lockDuration")
    if item.get("defaultMessageTimeToLive") is not None:
        kwargs["default_ttl_s"] = parse_duration(item["defaultMessageTimeToLive"], "defaultMessageTimeToLive")
    if "deadLetteringOnMessageExpiration" in item:
        kwargs["dead_letter_on_expiry"] = bool(item["deadLetteringOnMessageExpiration"])
    if "requiresDuplicateDetection" in item:
        kwargs["duplicate_detection"] = bool(item["requiresDuplicateDetection"])
    if "duplicateDetectionHistoryTimeWindow" in item:
        kwargs["duplicate_window_s"] = parse_duration(
            item["duplicateDetectionHistoryTimeWindow"], "duplicateDetectionHistoryTimeWindow"
        )
    return QueueConfig(**kwargs)


def load_config(path: str | Path) -> list[QueueConfig]:
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    except json.JSONDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid JSON: {exc}") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("queues"), list):
        raise ConfigError(f"config file {path}: expected an object with a 'queues' list")
    return [queue_from_dict(item) for item in doc["queues"]]


def merge(from_file: list[QueueConfig], names: list[str]) -> list[QueueConfig]:
    """File entries win; a --queue NAME not in the file gets the defaults."""
    by_name = {q.name.lower(): q for q in from_file}
    if len(by_name) != len(from_file):
        raise ConfigError("config file declares the same queue twice (names are case-insensitive)")
    for name in names:
        by_name.setdefault(name.lower(), QueueConfig(name=name))
    return list(by_name.values())
