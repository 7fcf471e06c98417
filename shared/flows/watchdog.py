"""One watchdog sweep: list the managed jobs, let the pure policy decide, carry out the decisions.

Cost: the list pages (which carry state, metadata and executionInfo) plus calls only for the jobs the
policy says need a closer look or an action. Actions run with bounded concurrency; two sweeps at once
are harmless because every action is idempotent (terminating an ending job counts as done).
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime

from shared.adapters.batch import BatchAdapter
from shared.adapters.services import Services
from shared.adapters.store import Store
from shared.flows.outcome import record_outcome
from shared.flows.submit import submit
from shared.pure import metadata
from shared.pure import watchdog_policy as policy
from shared.pure.redact import redacting_logger
from shared.pure.values import Job

log = redacting_logger("orchestrator.watchdog")


@dataclass
class SweepReport:
    jobs_seen: int = 0
    managed: int = 0
    actions: Counter = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    batch_calls: int = 0

    def as_dict(self) -> dict:
        return {"jobsSeen": self.jobs_seen, "managed": self.managed, "actions": dict(self.actions),
                "errors": self.errors, "batchCalls": self.batch_calls}


class _PoolSizes:
    """Pool sizes read once per sweep: many jobs share a pool."""

    def __init__(self, batch: BatchAdapter):
        self._batch = batch
        self._sizes: dict[str, int | None] = {}
        self._lock = threading.Lock()

    def nodes(self, pool_id: str) -> int | None:
        with self._lock:
            if pool_id in self._sizes:
                return self._sizes[pool_id]
        found = self._batch.pool(pool_id)
        with self._lock:
            self._sizes[pool_id] = found.nodes if found else None
        return self._sizes[pool_id]


class Watchdog:
    def __init__(self, batch: BatchAdapter, store: Store, rules: policy.Policy | None = None, concurrency: int = 8,
                 allowed_pools: frozenset[str] = frozenset()):
        self.batch = batch
        self.store = store
        self.rules = rules or policy.Policy()
        self.concurrency = concurrency
        self.allowed_pools = allowed_pools

    def sweep(self, now: datetime) -> SweepReport:
        """One pass over the managed jobs. One job's failure (Batch refusing, a storage error, a corrupt
        record) is that job's: it is recorded and the sweep goes on; the summary is always logged."""
        report = SweepReport()
        start_calls = self.batch.counter.calls
        try:
            recorded = self.store.recorded_outcomes()
            snaps = []
            for job in self.batch.list_jobs():
                report.jobs_seen += 1
                if not metadata.is_managed(job.metadata):
                    continue
                report.managed += 1
                snaps.append(policy.JobSnapshot(job, outcome_recorded=job.id in recorded))
            checks = policy.select_checks(snaps, now, self.rules)
            pools = _PoolSizes(self.batch)
            # Most jobs need no call and no action: decided here, so only the few that do I/O take a thread.
            work, results = [], []
            for snap in snaps:
                if snap.job_id in checks:
                    work.append((snap, None))
                    continue
                try:
                    decision = policy.decide(snap, now, self.rules)
                except Exception as err:
                    results.append(self._failed(snap, err))
                    continue
                if not isinstance(decision, policy.Nothing):
                    work.append((snap, decision))
            with ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="watchdog") as pool:
                results += pool.map(lambda item: self._handle(item[0], checks.get(item[0].job_id, frozenset()), pools,
                                                              now, item[1]), work)
            for job_id, action, error in results:
                if action != "Nothing":
                    report.actions[action] += 1
                if error:
                    report.errors.append(f"{job_id}: {error}")
        except Exception as err:
            report.errors.append(f"sweep: {type(err).__name__}: {err}")
            raise
        finally:
            report.batch_calls = self.batch.counter.calls - start_calls
            log.info("sweep done", extra=report.as_dict())
        return report

    def _handle(self, snap: policy.JobSnapshot, needs: frozenset[str], pools: _PoolSizes, now: datetime,
                decision: policy.Decision | None = None) -> tuple[str, str, str | None]:
        """Fetch what `needs` asks for and decide (unless the decision is already made), then act."""
        try:
            if decision is None:
                if policy.TASK_COUNTS in needs:
                    snap = replace(snap, task_counts=self.batch.task_counts(snap.job_id))
                more = policy.follow_up(snap)
                if policy.PREP_STATUS in more:
                    snap = replace(snap, prep=policy.prep_info(self.batch.node_runs(snap.job_id)))
                if policy.POOL_SIZE in more and snap.job.pool_id:
                    snap = replace(snap, pool_nodes=pools.nodes(snap.job.pool_id))
                decision = policy.decide(snap, now, self.rules)
            self._act(snap.job, decision, now)
            return snap.job_id, type(decision).__name__, None
        except Exception as err:  # one job's trouble must not stop the sweep for the others
            return self._failed(snap, err)

    @staticmethod
    def _failed(snap: policy.JobSnapshot, err: Exception) -> tuple[str, str, str]:
        log.warning("watchdog action failed", extra={"job": snap.job_id, "error": f"{type(err).__name__}: {err}"})
        return snap.job_id, "Error", f"{type(err).__name__}: {err}"

    def _act(self, job: Job, decision: policy.Decision, now: datetime) -> None:
        if isinstance(decision, policy.Terminate):
            log.info("terminating job", extra={"job": job.id, "reason": decision.reason, "detail": decision.detail})
            self.batch.terminate(job.id, decision.reason)
        elif isinstance(decision, policy.FinishSubmission):
            self._finish_submission(job, now)
        elif isinstance(decision, policy.RecordOutcome):
            record_outcome(self.batch, self.store, job, now)
        elif isinstance(decision, policy.Delete):
            self.batch.delete(job.id)
            self.store.forget_job(job.id)
            log.info("job deleted after retention", extra={"job": job.id})

    def _finish_submission(self, job: Job, now: datetime) -> None:
        saved = self.store.load_request(job.id)
        if saved is None:
            log.warning("no saved request to finish submission; terminating", extra={"job": job.id})
            self.batch.terminate(job.id, policy.SUBMISSION_ABANDONED)
            return
        raw = json.dumps(saved["request"]).encode()
        submit(raw, saved.get("messageId", job.id), self.batch, self.store, now,
               allowed_pools=self.allowed_pools, concurrency=self.concurrency, existing_job=job)


def sweep(services: Services, now: datetime) -> SweepReport:
    """The timer's sweep, with the app's settings."""
    s = services
    rules = policy.Policy(retention=s.settings.retention)
    return Watchdog(s.batch, s.store, rules, allowed_pools=s.settings.allowed_pools).sweep(now)
