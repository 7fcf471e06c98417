"""The watchdog's pure policy: what to do with one job, given what Batch said and the time.

Cost model: the adapter lists jobs (paged) and each listed Job becomes a JobSnapshot on its own;
`needs_details` says which extra calls (task counts, prep status) are worth making for that job;
`decide` is then called with whatever was fetched.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from shared.pure import metadata
from shared.pure.values import Job, NodeRuns, TaskCounts, TaskRun

# terminateReason values (Batch allows any string up to 64 chars).
ORCHESTRATOR_TIMEOUT = "OrchestratorTimeout"
ALL_TASKS_COMPLETE = "AllTasksComplete"
PREP_TASK_FAILED = "PrepTaskFailed"
SUBMISSION_ABANDONED = "SubmissionAbandoned"

TASK_COUNTS = "taskCounts"
PREP_STATUS = "prepStatus"


@dataclass(frozen=True)
class PrepInfo:
    """Summary of jobpreparationandreleasetaskstatus over the nodes that tried prep."""

    nodes_tried: int = 0
    nodes_failed: int = 0  # completed with result=failure (retries exhausted)
    nodes_running: int = 0
    last_failure_time: datetime | None = None


@dataclass(frozen=True)
class JobSnapshot:
    """A job as listed, plus whatever details `needs_details` asked for."""

    job: Job
    # None: take it from metadata. The store may know better (a completed job's metadata cannot be
    # updated, so the outcome's marker is kept beside the report).
    outcome_recorded: bool | None = None
    task_counts: TaskCounts | None = None
    prep: PrepInfo | None = None

    @property
    def job_id(self) -> str:
        return self.job.id


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
class Managed:
    """A job the orchestrator owns, its metadata decoded."""

    meta: metadata.JobMetadata
    outcome_recorded: bool


@dataclass(frozen=True)
class Unreadable:
    """Marked as ours, but its metadata does not decode: leave it alone and say why."""

    problem: str


def _read(snap: JobSnapshot) -> Managed | Unreadable | None:
    """None for jobs that are not the orchestrator's."""
    try:
        meta = metadata.decode(snap.job.metadata)
    except metadata.MetadataError as exc:
        return Unreadable(str(exc))
    if meta is None:
        return None
    recorded = meta.outcome_recorded if snap.outcome_recorded is None else snap.outcome_recorded
    return Managed(meta, recorded)


def _created(job: Job) -> datetime:
    # Batch always sets creationTime; the fallbacks keep a malformed answer from crashing a sweep.
    return job.creation_time or job.state_transition_time or datetime.min.replace(tzinfo=UTC)


def _prep_due(job: Job, now: datetime, policy: Policy) -> bool:
    if now - _created(job) < policy.prep_check_after:
        return False
    interval = max(int(policy.prep_check_interval.total_seconds()), 1)
    period = max(int(policy.sweep_period.total_seconds()), 1)
    # A per-job offset spreads the checks evenly over the interval instead of bursting.
    offset = int.from_bytes(hashlib.sha256(job.id.encode()).digest()[:8], "big") % interval
    return (int(now.timestamp()) + offset) % interval < period


def needs_details(snap: JobSnapshot, now: datetime, policy: Policy | None = None) -> frozenset[str]:
    """The extra Batch calls worth making before `decide` for this job (usually none)."""
    policy = policy or Policy()
    managed, job = _read(snap), snap.job
    if not isinstance(managed, Managed) or not job.active:
        return frozenset()
    if now >= managed.meta.deadline:
        return frozenset()
    if not managed.meta.submitted and now - _created(job) >= policy.submission_grace:
        return frozenset({TASK_COUNTS})
    if job.state == "active" and _prep_due(job, now, policy):
        # Prep status alone suffices: with waitForSuccess no task runs on a node whose prep failed.
        return frozenset({PREP_STATUS})
    return frozenset()


def _all_tasks_complete(meta: metadata.JobMetadata, counts: TaskCounts | None) -> bool:
    return (
        counts is not None
        and meta.expected_tasks > 0
        and counts.active == 0
        and counts.running == 0
        and counts.completed >= meta.expected_tasks
    )


def _prep_failed_everywhere(snap: JobSnapshot, now: datetime, policy: Policy) -> bool:
    prep, counts = snap.prep, snap.task_counts
    if prep is None or prep.nodes_tried == 0 or prep.nodes_failed < prep.nodes_tried:
        return False
    if prep.nodes_running or (counts is not None and counts.running):
        return False
    last = prep.last_failure_time
    return last is not None and now - last >= policy.prep_failure_grace


def decide(snap: JobSnapshot, now: datetime, policy: Policy | None = None) -> Decision:
    policy = policy or Policy()
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    managed, job = _read(snap), snap.job
    if managed is None:
        return Nothing("not managed")
    if isinstance(managed, Unreadable):
        return Nothing(f"managed but unreadable: {managed.problem}")
    meta = managed.meta

    if job.state == "completed":
        if not managed.outcome_recorded:
            return RecordOutcome()
        ended = job.end_time or job.state_transition_time or _created(job)
        if now - ended >= policy.retention:
            return Delete(f"completed {ended.astimezone(UTC).isoformat()}, past retention")
        return Nothing("completed, within retention")

    if not job.active:
        return Nothing(f"{job.state}: Batch is acting on it")

    if now >= meta.deadline:
        return Terminate(ORCHESTRATOR_TIMEOUT, f"deadline {metadata.format_time(meta.deadline)} passed")

    if _all_tasks_complete(meta, snap.task_counts):
        return Terminate(ALL_TASKS_COMPLETE, f"{snap.task_counts.completed}/{meta.expected_tasks} tasks complete")

    if not meta.submitted:
        age = now - _created(job)
        if age >= policy.submission_abandon_after:
            return Terminate(SUBMISSION_ABANDONED, f"submission unfinished after {age}")
        if age >= policy.submission_grace:
            return FinishSubmission(f"submission unfinished after {age}")
        return Nothing("submission in progress")

    if _prep_failed_everywhere(snap, now, policy):
        return Terminate(PREP_TASK_FAILED, f"prep failed on all {snap.prep.nodes_tried} nodes that tried")

    return Nothing("running")


def prep_info(runs: list[NodeRuns]) -> PrepInfo:
    """What the policy needs of the nodes' preparation runs."""
    tried = failed = running = 0
    last = None
    for node in runs:
        prep = node.preparation or TaskRun()
        tried += 1
        if prep.state == "running":
            running += 1
        elif prep.result == "failure":
            failed += 1
            end = prep.end_time
            last = end if last is None or (end and end > last) else last
    return PrepInfo(nodes_tried=tried, nodes_failed=failed, nodes_running=running, last_failure_time=last)
