"""What the Batch adapter answers with: the orchestrator's own view of jobs, tasks and node runs.

Plain frozen dataclasses, so decisions take them as they are and tests build them in one line. Only the
fields the orchestrator reads are here; the adapter fills them from the SDK's models.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

ACTIVE_STATES = frozenset({"active", "disabled"})


def iso(value: datetime | None) -> str | None:
    """A time as the orchestrator's records write it: ISO 8601 in UTC."""
    return value.astimezone(UTC).isoformat() if value else None


@dataclass(frozen=True)
class Job:
    id: str
    state: str
    metadata: Mapping[str, str] = field(default_factory=dict)
    creation_time: datetime | None = None
    state_transition_time: datetime | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None
    terminate_reason: str | None = None
    on_all_tasks_complete: str | None = None
    pool_id: str | None = None

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES


@dataclass(frozen=True)
class TaskCounts:
    active: int = 0
    running: int = 0
    completed: int = 0
    succeeded: int = 0
    failed: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"active": self.active, "running": self.running, "completed": self.completed,
                "succeeded": self.succeeded, "failed": self.failed}


@dataclass(frozen=True)
class TaskRun:
    """One job preparation or release task's run on one node."""

    state: str | None = None
    exit_code: int | None = None
    result: str | None = None  # "success" or "failure" once it has ended
    start_time: datetime | None = None
    end_time: datetime | None = None
    retry_count: int = 0
    failure: str | None = None  # Batch's failureInfo code, e.g. "FailureExitCode"
    failure_message: str | None = None


@dataclass(frozen=True)
class NodeRuns:
    """A node that ran the job: its preparation and release task runs (Batch's prep/release status)."""

    node_id: str
    preparation: TaskRun | None = None
    release: TaskRun | None = None


@dataclass(frozen=True)
class TaskResult:
    id: str
    state: str
    node_id: str | None = None
    exit_code: int | None = None
    result: str | None = None
    retry_count: int = 0
    start_time: datetime | None = None
    end_time: datetime | None = None
    failure: str | None = None


@dataclass(frozen=True)
class Pool:
    id: str
    nodes: int  # dedicated and low-priority nodes the pool has now
