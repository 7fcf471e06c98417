"""Batch job metadata the orchestrator owns: names and pure encode/decode.

The watchdog reads these from list_jobs, so everything it needs per job costs no extra call.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

MANAGED = "orchestrator.managed"
DEADLINE = "orchestrator.deadline"
REQUEST_HASH = "orchestrator.requestHash"
EXPECTED_TASKS = "orchestrator.expectedTasks"
SUBMITTED = "orchestrator.submitted"
OUTCOME_RECORDED = "orchestrator.outcomeRecorded"
# "false" when the request set preparation.waitForSuccess false: tasks then run even where prep failed.
PREP_GATES_TASKS = "orchestrator.prepGatesTasks"
ALL_KEYS = (MANAGED, DEADLINE, REQUEST_HASH, EXPECTED_TASKS, SUBMITTED, OUTCOME_RECORDED, PREP_GATES_TASKS)

_TRUE, _FALSE = "true", "false"


class MetadataError(ValueError):
    def __init__(self, key: str, rule: str):
        self.key, self.rule = key, rule
        super().__init__(f"metadata {key}: {rule}")


@dataclass(frozen=True)
class JobMetadata:
    deadline: datetime
    request_hash: str
    expected_tasks: int
    submitted: bool = False
    outcome_recorded: bool = False
    prep_gates_tasks: bool = True


def format_time(value: datetime) -> str:
    if value.tzinfo is None:
        raise ValueError("datetime must be timezone-aware")
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str) -> datetime:
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if value.tzinfo is None:
        raise ValueError("timestamp has no timezone")
    return value.astimezone(UTC)


def encode(meta: JobMetadata) -> dict[str, str]:
    return {
        MANAGED: _TRUE,
        DEADLINE: format_time(meta.deadline),
        REQUEST_HASH: meta.request_hash,
        EXPECTED_TASKS: str(meta.expected_tasks),
        SUBMITTED: _TRUE if meta.submitted else _FALSE,
        OUTCOME_RECORDED: _TRUE if meta.outcome_recorded else _FALSE,
        **({} if meta.prep_gates_tasks else {PREP_GATES_TASKS: _FALSE}),
    }


def as_dict(items: Mapping[str, str] | Iterable[Any] | None) -> dict[str, str]:
    """Accept a dict, Batch MetadataItem objects (.name/.value) or [{'name','value'}] dicts."""
    if items is None:
        return {}
    if isinstance(items, Mapping):
        return {str(k): str(v) for k, v in items.items()}
    out: dict[str, str] = {}
    for item in items:
        if isinstance(item, Mapping):
            out[str(item["name"])] = str(item.get("value", ""))
        else:
            out[str(item.name)] = str(item.value)
    return out


def to_items(metadata: Mapping[str, str]) -> list[dict[str, str]]:
    """Batch's wire shape, sorted so equal metadata always serialises the same."""
    return [{"name": k, "value": v} for k, v in sorted(metadata.items())]


def is_managed(metadata: Mapping[str, str]) -> bool:
    return metadata.get(MANAGED) == _TRUE


def _bool(metadata: Mapping[str, str], key: str, default: bool) -> bool:
    raw = metadata.get(key)
    if raw is None:
        return default
    if raw not in (_TRUE, _FALSE):
        raise MetadataError(key, f"must be 'true' or 'false', got {raw[:20]!r}")
    return raw == _TRUE


def decode(metadata: Mapping[str, str]) -> JobMetadata | None:
    """None for jobs that are not the orchestrator's; MetadataError if ours but malformed."""
    if not is_managed(metadata):
        return None
    for key in (DEADLINE, REQUEST_HASH, EXPECTED_TASKS):
        if not metadata.get(key):
            raise MetadataError(key, "is missing")
    try:
        deadline = parse_time(metadata[DEADLINE])
    except ValueError:
        raise MetadataError(DEADLINE, "must be an ISO 8601 UTC timestamp") from None
    raw_count = metadata[EXPECTED_TASKS]
    if not raw_count.isdigit():
        raise MetadataError(EXPECTED_TASKS, "must be a non-negative integer")
    return JobMetadata(
        deadline=deadline,
        request_hash=metadata[REQUEST_HASH],
        expected_tasks=int(raw_count),
        submitted=_bool(metadata, SUBMITTED, False),
        outcome_recorded=_bool(metadata, OUTCOME_RECORDED, False),
        prep_gates_tasks=_bool(metadata, PREP_GATES_TASKS, True),
    )


def decode_or_none(metadata: Mapping[str, str]) -> JobMetadata | None:
    """What decode says, with malformed metadata as None too: for readers that only report on a job."""
    try:
        return decode(metadata)
    except MetadataError:
        return None


def with_changes(metadata: Mapping[str, str], **changes: Any) -> dict[str, str]:
    """Batch replaces the whole metadata list on update, so changes are applied to a full copy.

    Keys the orchestrator does not own are kept as they were.
    """
    current = decode(metadata)
    if current is None:
        raise MetadataError(MANAGED, "job is not managed by the orchestrator")
    return {**metadata, **encode(replace(current, **changes))}


def mark_submitted(metadata: Mapping[str, str]) -> dict[str, str]:
    return with_changes(metadata, submitted=True)


def mark_outcome_recorded(metadata: Mapping[str, str]) -> dict[str, str]:
    return with_changes(metadata, outcome_recorded=True)
