"""Wire-format helpers: timestamps, ISO 8601 durations, ids and property checks."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import isodate

from local.batch.errors import invalid_property, missing_property

# Batch's "unlimited" duration: TimeSpan.MaxValue.
UNLIMITED = "P10675199DT2H48M5.4775807S"
UNLIMITED_TD = timedelta.max
ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def now() -> datetime:
    return datetime.now(UTC)


def fmt_time(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def http_date(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%a, %d %b %Y %H:%M:%S GMT")


def parse_duration(name: str, value: Any, default: timedelta | None = None) -> timedelta | None:
    if value is None:
        return default
    if not isinstance(value, str):
        raise invalid_property(name, value, "expected an ISO 8601 duration string")
    if value == UNLIMITED:
        return UNLIMITED_TD
    try:
        parsed = isodate.parse_duration(value)
    except (isodate.ISO8601Error, ValueError) as exc:
        raise invalid_property(name, value, "expected an ISO 8601 duration such as PT15M") from exc
    if not isinstance(parsed, timedelta) or parsed < timedelta(0):
        raise invalid_property(name, value, "expected a non-negative duration in days, hours, minutes, seconds")
    return parsed


def fmt_duration(value: timedelta | None) -> str | None:
    if value is None:
        return None
    if value >= UNLIMITED_TD:
        return UNLIMITED
    return isodate.duration_isoformat(value)


def check_id(name: str, value: Any) -> str:
    if value is None or value == "":
        raise missing_property(name)
    if not isinstance(value, str) or not ID_RE.fullmatch(value):
        raise invalid_property(
            name, value, "ids may contain only letters, digits, hyphens and underscores, at most 64 characters"
        )
    return value


def require(body: dict, name: str, kind: type | tuple[type, ...] = str) -> Any:
    value = body.get(name)
    if value is None:
        raise missing_property(name)
    if not isinstance(value, kind):
        raise invalid_property(name, value, f"expected {getattr(kind, '__name__', kind)}")
    return value


def optional(body: dict, name: str, kind: type | tuple[type, ...], default: Any = None) -> Any:
    value = body.get(name, default)
    if value is None:
        return default
    # bool is an int in Python; Batch does not accept true for a number.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise invalid_property(name, value, f"expected {getattr(kind, '__name__', kind)}")
    return value


def name_values(name: str, items: Any) -> list[dict]:
    """Validate a [{name, value}] list (environment settings, metadata)."""
    if items is None:
        return []
    if not isinstance(items, list):
        raise invalid_property(name, items, "expected a list of {name, value}")
    out = []
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not item["name"]:
            raise invalid_property(name, item, "each item needs a non-empty string name")
        value = item.get("value")
        if value is not None and not isinstance(value, str):
            raise invalid_property(f"{name}.value", value, "expected a string")
        out.append({"name": item["name"], "value": value if value is not None else ""})
    return out
