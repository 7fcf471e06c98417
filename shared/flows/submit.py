"""Submit one job request to Batch: validate, plan, create the job, add its tasks, then arm it.

Order matters: the job is created with onAllTasksComplete=noaction (so an empty or half-filled job is not
ended early), tasks go in chunks of 100, and only then one PATCH sets terminatejob and marks the
submission finished. A crash at any point leaves a state the next delivery resumes (TaskExists counts
as success) or the watchdog finishes.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime

from shared.adapters.batch import NOT_ACTIVE, BatchAdapter, PoolDirectory, QuotaReached, Refused, Transient
from shared.adapters.services import Services
from shared.adapters.store import Store
from shared.pure import metadata, retry
from shared.pure.blob_layout import rejection_prefix
from shared.pure.planning import WHEN_SUBMITTED, JobPlan, credential_refusal, plan, sas_expiry
from shared.pure.redact import redacting_logger
from shared.pure.request import (
    JobRequest,
    RequestInvalid,
    claimed_job_id,
    derive_job_id,
    message_key,
    parse_request,
    request_hash,
)
from shared.pure.retry import Resend
from shared.pure.values import Job

log = redacting_logger("orchestrator.submit")
CHUNK_RETRIES = 5

Progress = Callable[[int, int], None]  # (tasks added so far, tasks expected)


@dataclass(frozen=True)
class Submitted:
    job_id: str
    tasks: int
    resumed: bool


@dataclass(frozen=True)
class AlreadySubmitted:
    job_id: str


@dataclass(frozen=True)
class RequestRejected:
    key: str  # where the rejection is kept: job-reports/rejected/{key}.json
    reason: str


Result = Submitted | AlreadySubmitted | RequestRejected


def rejection_key(message_id: str, now: datetime) -> str:
    """Unique per delivery (a random part, so two in the same instant never share one), and found by
    its message's prefix."""
    return f"{rejection_prefix(message_id)}-{now.astimezone(UTC):%Y%m%dT%H%M%S%fZ}-{uuid.uuid4().hex[:8]}"


def _reject(store: Store, raw: bytes, message_id: str, now: datetime, reason: str, errors=None,
            job_id: str | None = None) -> RequestRejected:
    key = rejection_key(message_id, now)
    store.reject(key, raw, reason, errors, now, extra={"messageId": message_id, "jobId": job_id})
    return RequestRejected(key, reason)


def submit(raw: bytes, message_id: str, batch: BatchAdapter, store: Store, now: datetime, *,
           allowed_pools: frozenset[str] = frozenset(), concurrency: int = 8,
           progress: Progress | None = None, existing_job: Job | None = None,
           pools: PoolDirectory | None = None) -> Result:
    """Raises Transient or QuotaReached for the caller to retry later; every other failure is a
    RequestRejected, whatever the request's content.

    existing_job: the job as the caller already read it from Batch (the watchdog's listing), saving a call."""
    try:
        request = parse_request(raw)
    except RequestInvalid as exc:
        return _reject(store, raw, message_id, now, f"invalid request: {exc}", exc.errors,
                       job_id=claimed_job_id(raw))
    job_id = request.job_id or derive_job_id(message_id)
    if allowed_pools and request.pool_id not in allowed_pools:
        return _reject(store, raw, message_id, now,
                       f"poolId: {request.pool_id!r} is not a pool this orchestrator may use "
                       f"(ALLOWED_POOLS: {', '.join(sorted(allowed_pools))}) [pool_not_allowed]", job_id=job_id)
    refused = credential_refusal(request.timeout, store.credential_lifetime)
    if refused is not None:
        return _reject(store, raw, message_id, now, refused, job_id=job_id)
    digest = request_hash(request)

    existing = existing_job if existing_job is not None else batch.get_job(job_id)
    if existing is None and pools is not None and not pools.exists(request.pool_id):
        return _reject(store, raw, message_id, now,
                       f"poolId: the Batch account has no pool {request.pool_id!r}; Batch would accept the job and "
                       "leave it waiting until its deadline [pool_not_found]", job_id=job_id)
    if existing is None:
        try:
            job_plan = _plan(request, job_id, digest, now, store)
        except (ValueError, OverflowError, ArithmeticError, TypeError, RecursionError) as exc:
            # Whatever in the content the validation let through: a rejection with its reason, never a
            # dead letter without one.
            return _reject(store, raw, message_id, now,
                           f"could not plan the job: {type(exc).__name__}: {str(exc)[:300]} [plan_failed]",
                           job_id=job_id)
        store.save_request(job_id, raw, message_id)
        created = batch.create_job(job_plan.job)
        if created:
            log.info("job created", extra={"job": job_id, "tasks": job_plan.expected_tasks})
        else:
            existing = batch.get_job(job_id)
    if existing is not None:
        values = dict(existing.metadata)
        meta = metadata.decode_or_none(values)
        if meta is None or meta.request_hash != digest:
            return _reject(store, raw, message_id, now,
                           f"jobId: a different job {job_id!r} already exists; a request under an existing "
                           "job id is refused, not merged. Use a new jobId.", job_id=job_id)
        if meta.submitted or not existing.active:
            return AlreadySubmitted(job_id)
        job_plan = _plan(request, job_id, digest, meta.deadline - request.timeout, store)
    else:
        values = metadata.as_dict(job_plan.job["metadata"])
    try:
        added = add_tasks(batch, job_plan, concurrency, progress)
    except Refused as err:
        if err.code in NOT_ACTIVE:
            return _ended_meanwhile(job_id, err)
        # Validation let through something Batch will not take: end the job rather than leave it open.
        batch.terminate(job_id, "SubmissionRefused")
        return _reject(store, raw, message_id, now, f"Batch refused a task: {err}", job_id=job_id)
    try:
        batch.update_job(job_id, on_all_tasks_complete=WHEN_SUBMITTED,
                         metadata_values=metadata.mark_submitted(values))
    except Refused as err:
        if err.code in NOT_ACTIVE:
            return _ended_meanwhile(job_id, err)
        raise
    log.info("job submitted", extra={"job": job_id, "tasks": added, "resumed": existing is not None})
    return Submitted(job_id, added, resumed=existing is not None)


def _ended_meanwhile(job_id: str, err: Refused) -> AlreadySubmitted:
    """Our own job, ended while this delivery submitted it (its deadline, an operator, an earlier
    delivery): nothing is left to submit, and nothing is wrong with the request."""
    log.info("job ended while it was being submitted", extra={"job": job_id, "code": err.code})
    return AlreadySubmitted(job_id)


def _plan(request: JobRequest, job_id: str, digest: str, start: datetime, store: Store) -> JobPlan:
    deadline = start + request.timeout
    expiry = sas_expiry(deadline)
    store.place_uploader()
    return plan(request, job_id, digest, start, store.links(start, expiry))


def add_tasks(batch: BatchAdapter, job_plan: JobPlan, concurrency: int, progress: Progress | None = None) -> int:
    """Add every task in chunks of 100, `concurrency` chunks at a time; retry what Batch could not take."""

    def add(chunk: list[dict]) -> int:
        pending = chunk
        for _ in range(CHUNK_RETRIES):
            retry = set(batch.add_tasks(job_plan.job_id, pending))
            if not retry:
                return len(chunk)
            pending = [t for t in pending if t["id"] in retry]
        raise Transient(f"Batch kept refusing {len(pending)} tasks with server errors")

    added = 0
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="add-tasks") as pool:
        # Bounded look-ahead: a 100,000-task sweep is expanded lazily, a few chunks at a time.
        in_flight = []
        for chunk in job_plan.task_chunks():
            in_flight.append(pool.submit(add, chunk))
            if len(in_flight) >= concurrency * 2:
                added += in_flight.pop(0).result()
                if progress:
                    progress(added, job_plan.expected_tasks)
        for future in in_flight:
            added += future.result()
            if progress:
                progress(added, job_plan.expected_tasks)
    return added


def on_message(raw: bytes, message_id: str | None, properties: Mapping[str, object], now: datetime,
               services: Services, sequence_number: int | None = None) -> Result | Resend:
    """One delivery of the job-requests queue. The active-job quota is waited out, and a Batch that is
    throttling or down is waited out too: the request is scheduled again with a growing delay
    (shared.pure.retry), so an outage of hours neither loses it nor dead-letters it. Only once its
    retries are spent does Transient propagate (the message is abandoned, and dead-lettered in the end)."""
    s = services
    message_id = message_key(message_id, sequence_number, raw)
    if retry.claims_lineage(message_id, properties):
        claimed = properties
        properties = retry.verified(message_id, properties, s.store.resend_record(message_id),
                                    retry.body_digest(raw))
        if properties != dict(claimed):
            log.warning("the message claims to be a re-send the orchestrator did not schedule; it is taken as a "
                        "request of its own", extra={"messageId": message_id})
    lineage = retry.lineage(message_id, properties)
    try:
        result = submit(raw, lineage, s.batch, s.store, now, allowed_pools=s.settings.allowed_pools,
                        concurrency=s.settings.submit_concurrency, pools=s.pools)
    except (QuotaReached, Transient) as err:
        kind = retry.QUOTA if isinstance(err, QuotaReached) else retry.TRANSIENT
        again = retry.resend(message_id, properties, now, kind, nonce=uuid.uuid4().hex[:12])
        if again is None:
            log.error("Batch kept failing; the request is given up to the dead-letter queue",
                      extra={"messageId": lineage, "error": str(err)})
            raise
        # Recorded before it is sent, so the re-send finds its proof when it arrives.
        s.store.record_resend(again.message_id, retry.resend_record(again, retry.body_digest(raw)))
        s.queue.schedule(raw, again.message_id, again.properties, again.at)
        log.info("request scheduled again", extra={"messageId": lineage, "reason": kind, "attempt": again.attempt,
                                                   "at": again.at.isoformat(), "error": str(err)[:300]})
        return again
    log.info("submit finished", extra={"messageId": lineage, "result": type(result).__name__,
                                       "job": getattr(result, "job_id", None)})
    return result
