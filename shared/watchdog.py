"""One watchdog sweep: list the managed jobs, let the pure policy decide, carry out the decisions.

Cost: the list pages (which carry state, metadata and executionInfo) plus calls only for the jobs the
policy says need a closer look or an action. Actions run with bounded concurrency; two sweeps at once
are harmless because every action is idempotent (terminating an ending job counts as done).
"""

from __future__ import annotations

import json
import logging
from collections import Counter as Tally
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from shared import collector
from shared import metadata as md
from shared import watchdog_policy as wp
from shared.batch import BatchAdapter, QuotaReached, Refused, Transient
from shared.metadata import parse_time
from shared.store import Store
from shared.submit import submit

log = logging.getLogger("orchestrator.watchdog")


@dataclass
class SweepReport:
    jobs_seen: int = 0
    managed: int = 0
    actions: Tally = field(default_factory=Tally)
    errors: list[str] = field(default_factory=list)
    batch_calls: int = 0

    def as_dict(self) -> dict:
        return {"jobsSeen": self.jobs_seen, "managed": self.managed, "actions": dict(self.actions),
                "errors": self.errors, "batchCalls": self.batch_calls}


def _time(value) -> datetime | None:
    if not value:
        return None
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    return parse_time(str(value))


def snapshot(job: dict, recorded: set[str]) -> wp.JobSnapshot:
    info = job.get("executionInfo") or {}
    return wp.JobSnapshot(
        job_id=job["id"], state=job.get("state", ""), metadata=md.as_dict(job.get("metadata")),
        creation_time=_time(job.get("creationTime")), start_time=_time(info.get("startTime")),
        end_time=_time(info.get("endTime")), state_transition_time=_time(job.get("stateTransitionTime")),
        terminate_reason=info.get("terminateReason"),
        outcome_recorded=job["id"] in recorded)


def prep_info(statuses: list[dict]) -> wp.PrepInfo:
    tried = failed = running = 0
    last = None
    for status in statuses:
        prep = status.get("jobPreparationTaskExecutionInfo") or {}
        tried += 1
        if prep.get("state") == "running":
            running += 1
        elif prep.get("result") == "failure":
            failed += 1
            end = _time(prep.get("endTime"))
            last = end if last is None or (end and end > last) else last
    return wp.PrepInfo(nodes_tried=tried, nodes_failed=failed, nodes_running=running, last_failure_time=last)


def outcome_record(job: dict, counts: dict, now: datetime) -> dict:
    info = job.get("executionInfo") or {}
    meta = md.decode(md.as_dict(job.get("metadata")))
    return {
        "jobId": job["id"], "state": job.get("state"), "terminateReason": info.get("terminateReason"),
        "createdAt": _iso(job.get("creationTime")), "startedAt": _iso(info.get("startTime")),
        "endedAt": _iso(info.get("endTime")), "deadline": md.format_time(meta.deadline) if meta else None,
        "expectedTasks": meta.expected_tasks if meta else None,
        "taskCounts": _task_counts(counts),
        "recordedAt": now.astimezone(UTC).isoformat(),
    }


def _task_counts(counts: dict) -> dict[str, int]:
    return {k: counts.get(k, 0) for k in ("active", "running", "completed", "succeeded", "failed")}


def _iso(value) -> str | None:
    parsed = _time(value)
    return parsed.isoformat() if parsed else None


class Watchdog:
    def __init__(self, batch: BatchAdapter, store: Store, policy: wp.Policy | None = None, concurrency: int = 8,
                 allowed_pools: frozenset[str] = frozenset()):
        self.batch = batch
        self.store = store
        self.policy = policy or wp.Policy()
        self.concurrency = concurrency
        self.allowed_pools = allowed_pools

    def sweep(self, now: datetime) -> SweepReport:
        report = SweepReport()
        start_calls = self.batch.counter.calls
        recorded = self.store.recorded_outcomes()
        work = []
        for job in self.batch.list_jobs():
            report.jobs_seen += 1
            snap = snapshot(job, recorded)
            if not md.is_managed(snap.metadata):
                continue
            report.managed += 1
            work.append((job, snap))
        with ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="watchdog") as pool:
            for job_id, action, error in pool.map(lambda item: self._handle(*item, now), work):
                if action != "Nothing":
                    report.actions[action] += 1
                if error:
                    report.errors.append(f"{job_id}: {error}")
        report.batch_calls = self.batch.counter.calls - start_calls
        log.info("sweep done", extra=report.as_dict())
        return report

    def _handle(self, job: dict, snap: wp.JobSnapshot, now: datetime) -> tuple[str, str, str | None]:
        try:
            needs = wp.needs_details(snap, now, self.policy)
            if wp.TASK_COUNTS in needs:
                counts = self.batch.task_counts(snap.job_id)
                snap = replace(snap, task_counts=wp.TaskCounts(**_task_counts(counts)))
            if wp.PREP_STATUS in needs:
                snap = replace(snap, prep=prep_info(self.batch.prep_status(snap.job_id)))
            decision = wp.decide(snap, now, self.policy)
            self._act(job, snap, decision, now)
            return snap.job_id, type(decision).__name__, None
        except (Transient, QuotaReached, Refused) as err:
            log.warning("watchdog action failed", extra={"job": snap.job_id, "error": str(err)})
            return snap.job_id, "Error", str(err)

    def _act(self, job: dict, snap: wp.JobSnapshot, decision: wp.Decision, now: datetime) -> None:
        if isinstance(decision, wp.Terminate):
            log.info("terminating job", extra={"job": snap.job_id, "reason": decision.reason,
                                               "detail": decision.detail})
            self.batch.terminate(snap.job_id, decision.reason)
        elif isinstance(decision, wp.FinishSubmission):
            self._finish_submission(job, now)
        elif isinstance(decision, wp.RecordOutcome):
            counts = self.batch.task_counts(snap.job_id)
            outcome = outcome_record(job, counts, now)
            self.store.write_outcome(snap.job_id, outcome)
            collector.rebuild_report(self.store.logs, self.store.reports, snap.job_id, self.batch.node_statuses,
                                     outcome=outcome)
            log.info("outcome recorded", extra={"job": snap.job_id, "reason": snap.terminate_reason})
        elif isinstance(decision, wp.Delete):
            self.batch.delete(snap.job_id)
            self.store.forget_job(snap.job_id)
            log.info("job deleted after retention", extra={"job": snap.job_id})

    def _finish_submission(self, job: dict, now: datetime) -> None:
        job_id = job["id"]
        saved = self.store.load_request(job_id)
        if saved is None:
            log.warning("no saved request to finish submission; terminating", extra={"job": job_id})
            self.batch.terminate(job_id, wp.SUBMISSION_ABANDONED)
            return
        raw = json.dumps(saved["request"]).encode()
        submit(raw, saved.get("messageId", job_id), self.batch, self.store, now,
               allowed_pools=self.allowed_pools, concurrency=self.concurrency, existing_job=job)

