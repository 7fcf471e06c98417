"""The watchdog's pure policy: what to do with one job, given what Batch said and the time.

Cost model: the adapter lists jobs (paged) and builds a JobSnapshot from each list item alone;
`needs_details` says which extra calls (task counts, prep status) are worth making for that job;
`decide` is then called with whatever was fetched.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from shared import metadata as md

# terminateReason values (Batch allows any string up to 64 chars).
ORCHESTRATOR_TIMEOUT = "OrchestratorTimeout"
ALL_TASKS_COMPLETE = "AllTasksComplete"
PREP_TASK_FAILED = "PrepTaskFailed"
SUBMISSION_ABANDONED = "SubmissionAbandoned"

TASK_COUNTS = "taskCounts"
PREP_STATUS = "prepStatus"

_ACTIVE_STATES = frozenset({"active", "disabled"})


@dataclass(frozen=True)
class TaskCounts:
    active: int = 0
    running: int = 0
    completed: int = 0
    succeeded: int = 0
    failed: int = 0


@dataclass(frozen=True)
class PrepInfo:
    """Summary of jobpreparationandreleasetaskstatus over the nodes that tried prep."""

    nodes_tried: int = 0
    nodes_failed: int = 0  # completed with result=failure (retries exhausted)
    nodes_running: int = 0
    last_failure_time: datetime | None = None


@dataclass(frozen=True)
class JobSnapshot:
    job_id: str
    state: str
    metadata: Mapping[str, str]
    creation_time: datetime
    start_time: datetime | None = None
    end_time: datetime | None = None
    state_transition_time: datetime | None = None
    terminate_reason: str | None = None
    # None: take it from metadata. The adapter may know better (a completed job's metadata
    # cannot be updated, so the adapter may record it elsewhere).
    outcome_recorded: bool | None = None
    task_counts: TaskCounts | None = None
    prep: PrepInfo | None = None


@dataclass(frozen=True)
class Policy:
    sweep_period: timedelta = timedelta(minutes=1)
    submission_grace: timedelta = timedelta(minutes=10)
    submission_abandon_after: timedelta = timedelta(hours=2)
    prep_failure_grace: timedelta = timedelta(minutes=5)
    # Active jobs this old get their prep status checked, each about once per interval.
    prep_check_after: timedelta = timedelta(minutes=10)
    prep_check_interval: timedelta = timedelta(minutes=15)
    retention: timedelta = timedelta(days=7)


@dataclass(frozen=True)
class Nothing:
    note: str = ""


@dataclass(frozen=True)
class Terminate:
    reason: str
    detail: str = ""


@dataclass(frozen=True)
class FinishSubmission:
    detail: str = ""


@dataclass(frozen=True)
class RecordOutcome:
    pass


@dataclass(frozen=True)
class Delete:
    detail: str = ""


Decision = Nothing | Terminate | FinishSubmission | RecordOutcome | Delete


@dataclass(frozen=True)
class _Ctx:
    meta: md.JobMetadata
    outcome_recorded: bool = field(default=False)


def _ctx(job: JobSnapshot) -> _Ctx | None | str:
    try:
        meta = md.decode(job.metadata)
    except md.MetadataError as exc:
        return str(exc)
    if meta is None:
        return None
    recorded = meta.outcome_recorded if job.outcome_recorded is None else job.outcome_recorded
    return _Ctx(meta, recorded)


def _prep_due(job: JobSnapshot, now: datetime, policy: Policy) -> bool:
    if now - job.creation_time < policy.prep_check_after:
        return False
    interval = max(int(policy.prep_check_interval.total_seconds()), 1)
    period = max(int(policy.sweep_period.total_seconds()), 1)
    # A per-job offset spreads the checks evenly over the interval instead of bursting.
    offset = int.from_bytes(hashlib.sha256(job.job_id.encode()).digest()[:8], "big") % interval
    return (int(now.timestamp()) + offset) % interval < period


def needs_details(job: JobSnapshot, now: datetime, policy: Policy | None = None) -> frozenset[str]:
    """The extra Batch calls worth making before `decide` for this job (usually none)."""
    policy = policy or Policy()
    ctx = _ctx(job)
    if not isinstance(ctx, _Ctx) or job.state not in _ACTIVE_STATES:
        return frozenset()
    if now >= ctx.meta.deadline:
        return frozenset()
    if not ctx.meta.submitted and now - job.creation_time >= policy.submission_grace:
        return frozenset({TASK_COUNTS})
    if job.state == "active" and _prep_due(job, now, policy):
        # Prep status alone suffices: with waitForSuccess no task runs on a node whose prep failed.
        return frozenset({PREP_STATUS})
    return frozenset()


def _all_tasks_complete(meta: md.JobMetadata, counts: TaskCounts | None) -> bool:
    return (
        counts is not None
        and meta.expected_tasks > 0
        and counts.active == 0
        and counts.running == 0
        and counts.completed >= meta.expected_tasks
    )


def _prep_failed_everywhere(job: JobSnapshot, now: datetime, policy: Policy) -> bool:
    prep, counts = job.prep, job.task_counts
    if prep is None or prep.nodes_tried == 0 or prep.nodes_failed < prep.nodes_tried:
        return False
    if prep.nodes_running or (counts is not None and counts.running):
        return False
    last = prep.last_failure_time
    return last is not None and now - last >= policy.prep_failure_grace


def decide(job: JobSnapshot, now: datetime, policy: Policy | None = None) -> Decision:
    policy = policy or Policy()
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    ctx = _ctx(job)
    if ctx is None:
        return Nothing("not managed")
    if isinstance(ctx, str):
        return Nothing(f"managed but unreadable: {ctx}")
    meta = ctx.meta

    if job.state == "completed":
        if not ctx.outcome_recorded:
            return RecordOutcome()
        ended = job.end_time or job.state_transition_time or job.creation_time
        if now - ended >= policy.retention:
            return Delete(f"completed {ended.astimezone(UTC).isoformat()}, past retention")
        return Nothing("completed, within retention")

    if job.state not in _ACTIVE_STATES:
        return Nothing(f"{job.state}: Batch is acting on it")

    if now >= meta.deadline:
        return Terminate(ORCHESTRATOR_TIMEOUT, f"deadline {md.format_time(meta.deadline)} passed")

    if _all_tasks_complete(meta, job.task_counts):
        return Terminate(ALL_TASKS_COMPLETE, f"{job.task_counts.completed}/{meta.expected_tasks} tasks complete")

    if not meta.submitted:
        age = now - job.creation_time
        if age >= policy.submission_abandon_after:
            return Terminate(SUBMISSION_ABANDONED, f"submission unfinished after {age}")
        if age >= policy.submission_grace:
            return FinishSubmission(f"submission unfinished after {age}")
        return Nothing("submission in progress")

    if _prep_failed_everywhere(job, now, policy):
        return Terminate(PREP_TASK_FAILED, f"prep failed on all {job.prep.nodes_tried} nodes that tried")

    return Nothing("running")
