"""The watchdog's pure policy: what to do with one job, given what Batch said and the time.

Cost model: the adapter lists jobs (paged) and each listed Job becomes a JobSnapshot on its own.
`select_checks` picks, for the whole sweep, which jobs get their task counts read, at most a fixed number
per sweep however many jobs there are; `follow_up` says when those counts call for the preparation
status and the pool's size; `decide` is then called with whatever was fetched.

Two kinds of check, each taking its turn by round robin (every job of a kind once in a bounded number of
sweeps, none twice before all had one):
- young jobs (submitted less than `prep_watch` ago): a preparation task that fails on every node is seen
  within a sweep or two, while the job is young, which is when it happens;
- older jobs: the completion backstop. Batch's onAllTasksComplete should end a job whose tasks are done,
  but users see jobs left active with every task complete (Azure-Samples/azure-batch-samples#319).
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
POOL_SIZE = "poolSize"


@dataclass(frozen=True)
class PrepInfo:
    """Summary of jobpreparationandreleasetaskstatus over the nodes that tried prep."""

    nodes_tried: int = 0
    nodes_failed: int = 0  # completed with result=failure (retries exhausted)
    nodes_running: int = 0
    last_failure_time: datetime | None = None


@dataclass(frozen=True)
class JobSnapshot:
    """A job as listed, plus whatever details `select_checks` and `follow_up` asked for."""

    job: Job
    # None: take it from metadata. The store may know better (a completed job's metadata cannot be
    # updated, so the outcome's marker is kept beside the report).
    outcome_recorded: bool | None = None
    task_counts: TaskCounts | None = None
    prep: PrepInfo | None = None
    pool_nodes: int | None = None  # how many nodes the job's pool has now

    @property
    def job_id(self) -> str:
        return self.job.id


@dataclass(frozen=True)
class Policy:
    sweep_period: timedelta = timedelta(minutes=1)
    submission_grace: timedelta = timedelta(minutes=10)
    submission_abandon_after: timedelta = timedelta(hours=2)
    # With every node of the pool failed, nothing can run the job: end it at once. When the pool's size is
    # not known, wait this long after the last failure for another node to try.
    prep_failure_grace: timedelta = timedelta(minutes=5)
    prep_watch: timedelta = timedelta(minutes=30)
    young_checks_per_sweep: int = 100
    backstop_checks_per_sweep: int = 100
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


def _offset(job_id: str) -> int:
    return int.from_bytes(hashlib.sha256(job_id.encode()).digest()[:8], "big")


def _round_robin(job_ids: list[str], cap: int, now: datetime, policy: Policy) -> set[str]:
    """At most about `cap` of the jobs, a different share each sweep: each job once every
    ceil(len / cap) sweeps, whichever sweep this is (the sweep's number comes from the clock)."""
    if len(job_ids) <= cap:
        return set(job_ids)
    turns = -(-len(job_ids) // max(cap, 1))
    sweep = int(now.timestamp() // max(policy.sweep_period.total_seconds(), 1))
    return {j for j in job_ids if (_offset(j) + sweep) % turns == 0}


def select_checks(snaps: list[JobSnapshot], now: datetime, policy: Policy | None = None) -> dict[str, frozenset[str]]:
    """Which jobs of this sweep get their task counts read. Bounded: unsubmitted jobs past their grace
    (few, and each needs finishing), plus at most about young_checks_per_sweep + backstop_checks_per_sweep."""
    policy = policy or Policy()
    stuck, young, old = [], [], []
    for snap in snaps:
        managed, job = _read(snap), snap.job
        if not isinstance(managed, Managed) or job.state != "active" or now >= managed.meta.deadline:
            continue
        age = now - _created(job)
        if not managed.meta.submitted:
            if age >= policy.submission_grace:
                stuck.append(job.id)
        elif age < policy.prep_watch:
            young.append(job.id)
        else:
            old.append(job.id)
    chosen = set(stuck) | _round_robin(young, policy.young_checks_per_sweep, now, policy) | _round_robin(
        old, policy.backstop_checks_per_sweep, now, policy)
    return {job_id: frozenset({TASK_COUNTS}) for job_id in chosen}


def follow_up(snap: JobSnapshot) -> frozenset[str]:
    """After the task counts: tasks waiting and none ever ran is what a preparation task failing on every
    node looks like, so read the prep status (one call) and the pool's size (one call)."""
    counts, managed = snap.task_counts, _read(snap)
    if counts is None or not isinstance(managed, Managed) or not managed.meta.submitted:
        return frozenset()
    if not managed.meta.prep_gates_tasks:
        # waitForSuccess false: Batch runs the tasks where prep failed too, so a failed prep ends nothing.
        return frozenset()
    if counts.active > 0 and counts.running == 0 and counts.completed == 0:
        return frozenset({PREP_STATUS, POOL_SIZE})
    return frozenset()


def needs_details(snap: JobSnapshot, now: datetime, policy: Policy | None = None) -> frozenset[str]:
    """The checks one job would get in a sweep of its own (select_checks decides for a whole sweep)."""
    return select_checks([snap], now, policy).get(snap.job_id, frozenset())


def _all_tasks_complete(meta: metadata.JobMetadata, counts: TaskCounts | None) -> bool:
    return (
        counts is not None
        and meta.expected_tasks > 0
        and counts.active == 0
        and counts.running == 0
        and counts.completed >= meta.expected_tasks
    )


def _prep_failed_everywhere(snap: JobSnapshot, meta: metadata.JobMetadata, now: datetime, policy: Policy) -> bool:
    prep, counts = snap.prep, snap.task_counts
    if prep is None or prep.nodes_tried == 0 or prep.nodes_failed < prep.nodes_tried:
        return False
    if not meta.prep_gates_tasks:
        return False
    if prep.nodes_running or (counts is not None and counts.running):
        return False
    if snap.pool_nodes is not None:
        # Every node of the pool refused it: no task of the job can ever run. Fewer: another node may still
        # take it, and the deadline ends the job if none does.
        return prep.nodes_failed >= snap.pool_nodes
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

    if _prep_failed_everywhere(snap, meta, now, policy):
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
