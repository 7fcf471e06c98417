"""`host.json` and `local.settings.json`, read the way Core Tools and the Functions host read them.

Precedence follows Core Tools: a `Values` entry of local.settings.json applies only when the process
environment does not already set that name, so `export X=...` always wins over the file.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from .errors import HostConfigError

DEFAULT_PORT = 7071
DEFAULT_ROUTE_PREFIX = "api"
DEFAULT_POISON_BLOB_THRESHOLD = 5
DEFAULT_LOCK_RENEWAL = timedelta(minutes=5)

_TIMESPAN = re.compile(r"^(?:(?P<days>\d+)\.)?(?P<h>\d{1,2}):(?P<m>\d{1,2}):(?P<s>\d{1,2})(?:\.(?P<f>\d{1,7}))?$")
_SETTING_REF = re.compile(r"%([^%]+)%")


def parse_timespan(text: str, what: str) -> timedelta:
    """.NET TimeSpan text (`[d.]hh:mm:ss[.fffffff]`), the format host.json uses for durations."""
    match = _TIMESPAN.match(str(text).strip())
    if not match:
        raise HostConfigError(f"{what}: {text!r} is not a duration like 00:05:00 (hh:mm:ss); fix host.json")
    fraction = match["f"] or "0"
    return timedelta(days=int(match["days"] or 0), hours=int(match["h"]), minutes=int(match["m"]),
                     seconds=int(match["s"]), microseconds=int(fraction.ljust(6, "0")[:6]))


@dataclass(frozen=True)
class ServiceBusOptions:
    max_concurrent_calls: int
    max_auto_lock_renewal: timedelta
    auto_complete: bool
    prefetch_count: int


@dataclass(frozen=True)
class BlobOptions:
    max_degree_of_parallelism: int
    poison_blob_threshold: int


@dataclass(frozen=True)
class HostJson:
    service_bus: ServiceBusOptions
    blobs: BlobOptions
    route_prefix: str
    queue_message_encoding: str = "base64"


def _read_json(path: Path, what: str) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise HostConfigError(f"{path}: cannot read {what} ({exc}); fix the JSON or delete the file") from None
    if not isinstance(data, dict):
        raise HostConfigError(f"{path}: {what} must be a JSON object")
    return data


def _positive_int(value: Any, what: str) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = 0
    if number < 1:
        raise HostConfigError(f"host.json {what}: expected a whole number >= 1, got {value!r}")
    return number


def read_host_json(app_dir: Path) -> HostJson:
    path = app_dir / "host.json"
    if not path.exists():
        raise HostConfigError(f"{path} is missing: every Functions app needs a host.json "
                              '(at least {"version": "2.0"}) in its root folder')
    data = _read_json(path, "host.json")
    if str(data.get("version", "")) != "2.0":
        raise HostConfigError(f'{path}: "version" must be "2.0" (the only version Functions v4 runs)')
    extensions = data.get("extensions") or {}
    sb = extensions.get("serviceBus") or {}
    # Service Bus extension v5 reads top-level keys; v4-era apps nest them in messageHandlerOptions.
    handler = sb.get("messageHandlerOptions") or {}
    concurrency = sb.get("maxConcurrentCalls", handler.get("maxConcurrentCalls"))
    renewal = sb.get("maxAutoLockRenewalDuration", handler.get("maxAutoRenewDuration"))
    auto_complete = sb.get("autoCompleteMessages", handler.get("autoComplete", True))
    service_bus = ServiceBusOptions(
        max_concurrent_calls=(_positive_int(concurrency, "extensions.serviceBus.maxConcurrentCalls")
                              if concurrency is not None else 16 * (os.cpu_count() or 1)),
        max_auto_lock_renewal=(parse_timespan(renewal, "host.json extensions.serviceBus.maxAutoLockRenewalDuration")
                               if renewal is not None else DEFAULT_LOCK_RENEWAL),
        auto_complete=bool(auto_complete),
        prefetch_count=int(sb.get("prefetchCount", 0) or 0),
    )
    blobs_section = extensions.get("blobs") or {}
    parallelism = blobs_section.get("maxDegreeOfParallelism")
    threshold = blobs_section.get("poisonBlobThreshold")
    blobs = BlobOptions(
        max_degree_of_parallelism=(_positive_int(parallelism, "extensions.blobs.maxDegreeOfParallelism")
                                   if parallelism is not None else 8 * (os.cpu_count() or 1)),
        poison_blob_threshold=(_positive_int(threshold, "extensions.blobs.poisonBlobThreshold")
                               if threshold is not None else DEFAULT_POISON_BLOB_THRESHOLD),
    )
    prefix = (extensions.get("http") or {}).get("routePrefix", DEFAULT_ROUTE_PREFIX)
    # The queue extension's messageEncoding for queue outputs: base64 (its default) or none.
    encoding = str((extensions.get("queues") or {}).get("messageEncoding", "base64")).lower()
    if encoding not in ("base64", "none"):
        raise HostConfigError(f"host.json extensions.queues.messageEncoding: expected base64 or none, got {encoding!r}")
    return HostJson(service_bus=service_bus, blobs=blobs, route_prefix=str(prefix).strip("/"),
                    queue_message_encoding=encoding)


@dataclass(frozen=True)
class LocalSettings:
    values: dict[str, str]
    connection_strings: dict[str, str]
    port: int | None


def read_local_settings(app_dir: Path) -> LocalSettings:
    path = app_dir / "local.settings.json"
    data = _read_json(path, "local.settings.json")
    if data.get("IsEncrypted"):
        raise HostConfigError(f"{path} is encrypted; the dev host reads plain values only: "
                              'set "IsEncrypted": false and write the values in clear')
    values = data.get("Values") or {}
    if not isinstance(values, dict):
        raise HostConfigError(f'{path}: "Values" must be an object of name -> string')
    port = (data.get("Host") or {}).get("LocalHttpPort")
    return LocalSettings(
        values={str(k): "" if v is None else str(v) for k, v in values.items()},
        connection_strings={str(k): str(v) for k, v in (data.get("ConnectionStrings") or {}).items()},
        port=int(port) if port else None,
    )


def effective_settings(local: LocalSettings, process_env: Mapping[str, str],
                       overrides: Mapping[str, str]) -> dict[str, str]:
    """What the app sees: local Values, then the process environment on top, then explicit overrides."""
    merged = dict(local.values)
    merged.update(process_env)
    merged.update(overrides)
    return merged


class SettingResolver:
    """`%NAME%` expressions and connection names, failing with the function and binding in the message."""

    def __init__(self, settings: Mapping[str, str], connection_strings: Mapping[str, str] | None = None):
        self.settings = settings
        self.connection_strings = connection_strings or {}

    def resolve(self, text: str, function: str, binding: str, prop: str) -> str:
        def replace(match: re.Match) -> str:
            name = match.group(1)
            value = self.settings.get(name)
            if not value:
                raise HostConfigError(
                    f"function {function!r}, binding {binding!r}: {prop} refers to app setting %{name}% "
                    f"which is not set; add {name!r} to Values in local.settings.json or export it")
            return value

        return _SETTING_REF.sub(replace, text)

    def connection(self, name: str | None, default: str, function: str, binding: str) -> str:
        """The connection string a binding's `connection` names, looked up as the Functions host does."""
        name = name or default
        for candidate in (name, f"AzureWebJobs{name}"):
            value = self.settings.get(candidate) or self.connection_strings.get(candidate)
            if value:
                return value
        identity = [k for k in self.settings if k.startswith(f"{name}__")]
        if identity:
            raise HostConfigError(
                f"function {function!r}, binding {binding!r}: connection {name!r} is identity-based "
                f"({', '.join(sorted(identity))}); the dev host talks to the local emulators and needs a "
                f"connection string: set {name!r} to the emulator's connection string")
        raise HostConfigError(
            f"function {function!r}, binding {binding!r}: connection setting {name!r} is not set; "
            f"add {name!r} (a connection string) to Values in local.settings.json or export it")
