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
from typing import Any

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
    # A topic's subscription is a queue whose name is `<topic>/Subscriptions/<name>`, fed through its rules.
    topic: str | None = None
    rules: tuple = ()  # filters.Rule; none means Service Bus's $Default rule, which takes every message

    def __post_init__(self) -> None:
        parts = self.name.split("/")
        names = [parts[0], parts[2]] if self.topic and len(parts) == 3 and parts[1] == "Subscriptions" else parts
        if self.topic and len(parts) != 3:
            raise ConfigError(f"subscription {self.name!r}: expected '<topic>/Subscriptions/<name>'")
        if not all(_NAME.fullmatch(n) for n in names):
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


def _checked_name(kind: str, item: Any, fields: set[str] | frozenset[str], unsupported: dict[str, str],
                  within: str = "") -> str:
    """The name of a queue, topic or subscription definition once its fields are checked; each refusal
    names the entity (and what it is within) and the field."""
    if not isinstance(item, dict) or "name" not in item:
        raise ConfigError(f"{within + ': ' if within else ''}each {kind} needs at least a name, got {item!r}")
    name = str(item["name"])
    where = f"{within}, {kind} {name}" if within else f"{kind} {name}"
    bad = sorted(k for k in unsupported if item.get(k))
    if bad:
        raise ConfigError(f"{where}: {', '.join(bad)}: {unsupported[bad[0]]}")
    unknown = set(item) - set(fields) - set(unsupported)
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {sorted(unknown)}; known: {sorted(fields)}")
    return name


def queue_from_dict(item: dict) -> QueueConfig:
    kwargs: dict = {"name": _checked_name("queue", item, _FIELDS, _UNSUPPORTED)}
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


@dataclass(frozen=True, slots=True)
class TopicConfig:
    name: str
    default_ttl_s: float | None = DEFAULT_TTL_S
    duplicate_detection: bool = False
    duplicate_window_s: float = DEFAULT_DUPLICATE_WINDOW_S
    subscriptions: tuple[QueueConfig, ...] = ()

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.name):
            raise ConfigError(f"topic name {self.name!r}: use letters, digits, '.', '-', '_' (max 260)")
        names = [s.name.lower() for s in self.subscriptions]
        if len(set(names)) != len(names):
            raise ConfigError(f"topic {self.name}: the same subscription twice (names are case-insensitive)")


_TOPIC_FIELDS = {"name", "defaultMessageTimeToLive", "requiresDuplicateDetection",
                 "duplicateDetectionHistoryTimeWindow", "subscriptions"}
_SUBSCRIPTION_FIELDS = {"name", "maxDeliveryCount", "lockDuration", "defaultMessageTimeToLive",
                        "deadLetteringOnMessageExpiration", "rules"}
_SUBSCRIPTION_UNSUPPORTED = {
    **_UNSUPPORTED,
    "deadLetteringOnFilterEvaluationExceptions": "dead-lettering on filter evaluation errors is not supported by "
                                                 "the local emulator (a filter that cannot be evaluated on a "
                                                 "message does not match it)",
}


def rule_from_dict(topic: str, subscription: str, item: dict):
    from .filters import CORRELATION_FIELDS, FilterError, Rule

    where = f"topic {topic}, subscription {subscription}, rule {item.get('name')!r}"
    if not isinstance(item, dict) or not item.get("name"):
        raise ConfigError(f"topic {topic}, subscription {subscription}: each rule needs a name, got {item!r}")
    unknown = set(item) - {"name", "filterType", "sqlFilter", "correlationFilter", "action"}
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {sorted(unknown)}")
    if item.get("action"):
        raise ConfigError(f"{where}: rule actions (SET/REMOVE) are not supported by the local emulator")
    kind = item.get("filterType") or ("CorrelationFilter" if "correlationFilter" in item else "SqlFilter")
    if kind == "SqlFilter":
        sql = item.get("sqlFilter")
        expression = sql.get("sqlExpression") if isinstance(sql, dict) else sql
        if not isinstance(expression, str) or not expression.strip():
            raise ConfigError(f"{where}: a SqlFilter needs sqlFilter.sqlExpression")
        try:
            return Rule.sql_filter(item["name"], expression)
        except FilterError as exc:
            raise ConfigError(f"{where}: sqlFilter {expression!r}: {exc}") from None
    if kind == "CorrelationFilter":
        spec = item.get("correlationFilter")
        if not isinstance(spec, dict) or not spec:
            raise ConfigError(f"{where}: a CorrelationFilter needs correlationFilter with at least one property")
        bad = set(spec) - set(CORRELATION_FIELDS) - {"properties"}
        if bad:
            raise ConfigError(f"{where}: correlationFilter field(s) {sorted(bad)} unknown; known: "
                              f"{sorted(CORRELATION_FIELDS) + ['properties']}")
        return Rule(name=item["name"], correlation=dict(spec))
    raise ConfigError(f"{where}: filterType must be SqlFilter or CorrelationFilter, got {kind!r}")


def topic_from_dict(item: dict) -> TopicConfig:
    name = _checked_name("topic", item, _TOPIC_FIELDS, _UNSUPPORTED)
    kwargs: dict = {"name": name}
    if item.get("defaultMessageTimeToLive") is not None:
        kwargs["default_ttl_s"] = parse_duration(item["defaultMessageTimeToLive"], "defaultMessageTimeToLive")
    if "requiresDuplicateDetection" in item:
        kwargs["duplicate_detection"] = bool(item["requiresDuplicateDetection"])
    if "duplicateDetectionHistoryTimeWindow" in item:
        kwargs["duplicate_window_s"] = parse_duration(item["duplicateDetectionHistoryTimeWindow"],
                                                      "duplicateDetectionHistoryTimeWindow")
    subs = []
    for sub in item.get("subscriptions") or []:
        sub_name = _checked_name("subscription", sub, _SUBSCRIPTION_FIELDS, _SUBSCRIPTION_UNSUPPORTED,
                                 within=f"topic {name}")
        rules = tuple(rule_from_dict(name, sub_name, r) for r in sub.get("rules") or [])
        if len({r.name.lower() for r in rules}) != len(rules):
            raise ConfigError(f"topic {name}, subscription {sub_name}: two rules with the same name")
        queue_like = {k: v for k, v in sub.items() if k in _SUBSCRIPTION_FIELDS and k != "rules"}
        base = queue_from_dict({**queue_like, "name": "x"})
        subs.append(QueueConfig(name=f"{name}/Subscriptions/{sub_name}", max_delivery_count=base.max_delivery_count,
                                lock_duration_s=base.lock_duration_s, default_ttl_s=base.default_ttl_s,
                                dead_letter_on_expiry=base.dead_letter_on_expiry, topic=name, rules=rules))
    kwargs["subscriptions"] = tuple(subs)
    return TopicConfig(**kwargs)


def subscription_from_flag(value: str) -> tuple[str, str]:
    """--subscription TOPIC/NAME"""
    topic, sep, name = value.partition("/")
    if not sep or not topic or not name or "/" in name:
        raise ConfigError(f"--subscription {value!r}: expected TOPIC/NAME")
    return topic, name


def load_config(path: str | Path) -> list[QueueConfig]:
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    except json.JSONDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid JSON: {exc}") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("queues", []), list) or \
            not isinstance(doc.get("topics", []), list) or not ("queues" in doc or "topics" in doc):
        raise ConfigError(f"config file {path}: expected an object with a 'queues' list (and/or 'topics')")
    return [queue_from_dict(item) for item in doc.get("queues", [])]


def load_topics(path: str | Path) -> list[TopicConfig]:
    doc = json.loads(Path(path).read_text(encoding="utf-8"))  # load_config has checked it
    return [topic_from_dict(item) for item in doc.get("topics", [])]


def merge_topics(from_file: list[TopicConfig], subscriptions: list[str], queues: list[QueueConfig]) -> list[TopicConfig]:
    """File entries win; --subscription TOPIC/NAME adds a subscription (and its topic) with the defaults."""
    by_name = {t.name.lower(): t for t in from_file}
    if len(by_name) != len(from_file):
        raise ConfigError("config file declares the same topic twice (names are case-insensitive)")
    for flag in subscriptions:
        topic, name = subscription_from_flag(flag)
        current = by_name.get(topic.lower()) or TopicConfig(name=topic)
        if any(s.name.lower() == f"{current.name}/subscriptions/{name}".lower() for s in current.subscriptions):
            continue
        sub = QueueConfig(name=f"{current.name}/Subscriptions/{name}", topic=current.name)
        by_name[topic.lower()] = TopicConfig(current.name, current.default_ttl_s, current.duplicate_detection,
                                             current.duplicate_window_s, current.subscriptions + (sub,))
    clash = sorted(set(by_name) & {q.name.lower() for q in queues})
    if clash:
        raise ConfigError(f"{clash}: a queue and a topic cannot have the same name (one namespace)")
    return list(by_name.values())


def merge(from_file: list[QueueConfig], names: list[str]) -> list[QueueConfig]:
    """File entries win; a --queue NAME not in the file gets the defaults."""
    by_name = {q.name.lower(): q for q in from_file}
    if len(by_name) != len(from_file):
        raise ConfigError("config file declares the same queue twice (names are case-insensitive)")
    for name in names:
        by_name.setdefault(name.lower(), QueueConfig(name=name))
    return list(by_name.values())
