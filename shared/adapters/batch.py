"""The Batch adapter: the orchestrator's only door to Azure Batch, through the azure-batch SDK.

Interface (what flows may call): get_job, list_jobs, create_job, add_tasks, update_job, terminate, delete,
task_counts, node_runs, tasks, pool, node_file_tail. Answers are `shared.pure.values` (Job, TaskCounts, NodeRuns, TaskResult);
request bodies are the REST bodies `shared.pure.planning` builds. Errors come as three exceptions the core
understands: Transient (retry later), QuotaReached (the account's active-job quota: wait, don't fail) and
Refused (a permanent client error, with Batch's error code).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import quote, urlencode

from azure.batch import BatchClient, models
from azure.core.exceptions import AzureError, HttpResponseError, ServiceRequestError
from azure.core.rest import HttpRequest

from shared.pure import metadata
from shared.pure.redact import redacting_logger
from shared.pure.values import Job, NodeRuns, Pool, TaskCounts, TaskResult, TaskRun

log = redacting_logger("orchestrator.batch")

API_VERSION = "2025-06-01"
TRANSIENT_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
JOB_LIST_SELECT = ["id", "state", "metadata", "creationTime", "stateTransitionTime", "executionInfo", "poolInfo",
                   "onAllTasksComplete"]
TASK_SELECT = ["id", "state", "nodeInfo", "executionInfo"]
ALREADY_ENDING = frozenset({"JobCompleted", "JobBeingTerminated", "JobBeingDeleted"})
# What Batch answers a change to a job that is no longer active (adding tasks, the PATCH).
NOT_ACTIVE = ALREADY_ENDING | {"JobNotActive"}


class Transient(Exception):
    """Batch is throttling or unavailable: the caller should retry later."""


class QuotaReached(Exception):
    """The account's active-job quota is full: a normal condition, wait and try again."""


class Refused(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code = code


def _classify(status: int, code: str, message: str) -> Exception:
    """One Batch error answer in the core's vocabulary, whichever way the call was made."""
    if code == "ActiveJobAndScheduleQuotaReached":
        return QuotaReached(code)
    if status in TRANSIENT_STATUSES or code in ("OperationTimedOut", "ServerBusy"):
        return Transient(f"Batch answered {status} {code}")
    return Refused(code or str(status), message.split("\n")[0])


def _checked(response) -> dict:
    """The JSON body of a plain REST answer ({} if it has none); an error answer raised as the SDK's would be."""
    try:
        body = response.json()
    except ValueError:
        body = {}
    body = body if isinstance(body, dict) else {}
    if response.status_code >= 400:
        raise _classify(response.status_code, body.get("code") or "", (body.get("message") or {}).get("value") or "")
    return body


def _translate(err: Exception) -> Exception:
    if isinstance(err, ServiceRequestError):
        return Transient(f"Batch unreachable: {err}")
    if isinstance(err, HttpResponseError):
        code = getattr(getattr(err, "error", None), "code", None) or ""
        return _classify(err.status_code, code, err.message or "")
    if isinstance(err, AzureError):
        return Transient(str(err))
    return err


@dataclass
class CallCounter:
    """Counts the Batch calls a piece of work made (benchmarks and the watchdog's cost report)."""

    calls: int = 0


# ----- SDK models -> our values ---------------------------------------------------------------------

def _utc(value: datetime | None) -> datetime | None:
    return value.astimezone(UTC) if value is not None else None


def _enum(value) -> str | None:
    return None if value is None else str(getattr(value, "value", value))


def _job(model: models.BatchJob) -> Job:
    info = model.execution_info
    return Job(
        id=model.id, state=_enum(model.state) or "", metadata=metadata.as_dict(model.metadata),
        creation_time=_utc(model.creation_time), state_transition_time=_utc(model.state_transition_time),
        start_time=_utc(info.start_time) if info else None, end_time=_utc(info.end_time) if info else None,
        terminate_reason=info.termination_reason if info else None,
        on_all_tasks_complete=_enum(model.all_tasks_complete_mode),
        pool_id=model.pool_info.pool_id if model.pool_info else None,
    )


def _wire_time(value) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).astimezone(UTC)
    except ValueError:
        return None


def _job_from_wire(item: Mapping) -> Job:
    """A job as the REST API lists it ($select'ed), without building the SDK's model."""
    info = item.get("executionInfo") or {}
    return Job(
        id=item.get("id", ""), state=item.get("state", ""), metadata=metadata.as_dict(item.get("metadata") or []),
        creation_time=_wire_time(item.get("creationTime")), state_transition_time=_wire_time(item.get("stateTransitionTime")),
        start_time=_wire_time(info.get("startTime")), end_time=_wire_time(info.get("endTime")),
        terminate_reason=info.get("terminateReason"), on_all_tasks_complete=item.get("onAllTasksComplete"),
        pool_id=(item.get("poolInfo") or {}).get("poolId"),
    )


def _run(info) -> TaskRun | None:
    if info is None:
        return None
    failure = getattr(info, "failure_info", None)
    return TaskRun(state=_enum(info.state), exit_code=info.exit_code, result=_enum(info.result),
                   start_time=_utc(info.start_time), end_time=_utc(info.end_time),
                   retry_count=getattr(info, "retry_count", None) or 0, failure=failure.code if failure else None,
                   failure_message=failure.message if failure else None)


def _task(model: models.BatchTask) -> TaskResult:
    info, node = model.execution_info, model.node_info
    failure = info.failure_info if info else None
    return TaskResult(
        id=model.id, state=_enum(model.state) or "", node_id=node.node_id if node else None,
        exit_code=info.exit_code if info else None, result=_enum(info.result) if info else None,
        retry_count=(info.retry_count or 0) if info else 0, start_time=_utc(info.start_time) if info else None,
        end_time=_utc(info.end_time) if info else None, failure=failure.code if failure else None,
    )


class BatchAdapter:
    def __init__(self, client: BatchClient, counter: CallCounter | None = None):
        self.client = client
        self.counter = counter or CallCounter()

    def _call(self, fn, *args, **kwargs):
        self.counter.calls += 1
        try:
            return fn(*args, **kwargs)
        except Exception as err:  # translated into the core's vocabulary
            translated = _translate(err)
            if translated is err:
                raise
            raise translated from err

    # ----- jobs -----------------------------------------------------------------------------------

    def get_job(self, job_id: str) -> Job | None:
        try:
            return _job(self._call(self.client.get_job, job_id))
        except Refused as err:
            if err.code == "JobNotFound":
                return None
            raise

    def create_job(self, body: Mapping) -> bool:
        """Create the job; False if it already exists (a concurrent or earlier delivery made it)."""
        try:
            self._call(self.client.create_job, models.BatchJobCreateOptions(dict(body)))
            return True
        except Refused as err:
            if err.code == "JobExists":
                return False
            raise

    def add_tasks(self, job_id: str, bodies: list[dict]) -> list[str]:
        """Add one chunk; return the ids Batch could not take this time (server errors) to retry.

        TaskExists counts as success: a redelivered request re-adds what an earlier delivery added.
        """
        # The REST body goes as plain JSON: the SDK serialises a dict as it would its model, and building
        # 100 models per chunk costs more than the call itself.
        result = self._call(self.client.create_task_collection, job_id, {"value": bodies})
        retry: list[str] = []
        for item in result.result_values or []:
            if item.status == "success":
                continue
            code = getattr(item.error, "code", "") or ""
            if item.status == "clienterror" and code == "TaskExists":
                continue
            if item.status == "servererror":
                retry.append(item.task_id)
                continue
            raise Refused(code or "TaskRefused", f"task {item.task_id}: "
                          f"{getattr(getattr(item.error, 'message', None), 'value', '') or code}")
        return retry

    def update_job(self, job_id: str, *, on_all_tasks_complete: str, metadata_values: Mapping[str, str]) -> None:
        """PATCH the job. Batch replaces the whole metadata list, so metadata_values is all of it."""
        update = models.BatchJobUpdateOptions({"onAllTasksComplete": on_all_tasks_complete,
                                          "metadata": metadata.to_items(metadata_values)})
        self._call(self.client.update_job, job_id, update)

    def list_jobs(self, page_size: int = 1000) -> Iterator[Job]:
        """Every job, page by page: one Batch call per page of up to 1,000 jobs.

        The pages are read as JSON through the SDK's pipeline (its auth, retries and errors) rather than
        into the SDK's models: building 10,000 job models costs seconds a sweep, the job fields we keep
        are few, and the watchdog lists every job every minute."""
        query = urlencode({"api-version": API_VERSION, "$select": ",".join(JOB_LIST_SELECT), "maxresults": page_size})
        url: str | None = f"/jobs?{query}"
        while url:
            body = self._get_json(url)
            yield from (_job_from_wire(item) for item in body.get("value") or [])
            url = body.get("odata.nextLink")

    def _get_json(self, url: str) -> dict:
        return _checked(self._call(self.client.send_request, HttpRequest("GET", url, headers={
            "Accept": "application/json; odata=minimalmetadata"})))

    def task_counts(self, job_id: str) -> TaskCounts:
        counts = self._call(self.client.get_job_task_counts, job_id).task_counts
        return TaskCounts(active=counts.active, running=counts.running, completed=counts.completed,
                          succeeded=counts.succeeded, failed=counts.failed)

    def node_runs(self, job_id: str) -> list[NodeRuns]:
        """Each node that ran the job's preparation task, with its prep and release runs."""
        try:
            statuses = self._call(lambda: list(self.client.list_job_preparation_and_release_task_status(job_id)))
        except Refused as err:
            if err.code in ("JobPreparationTaskNotSpecified", "JobNotFound"):
                return []
            raise
        return [NodeRuns(node_id=s.node_id, preparation=_run(s.job_preparation_task_execution_info),
                         release=_run(s.job_release_task_execution_info)) for s in statuses]

    def tasks(self, job_id: str) -> Iterator[TaskResult]:
        """Every task of the job, page by page (one call per 1,000 tasks); nothing if the job is gone."""
        pages = self.client.list_tasks(job_id, select=TASK_SELECT, max_results=1000).by_page()
        while True:
            try:
                page = list(self._call(next, pages))
            except StopIteration:
                self.counter.calls -= 1
                return
            except Refused as err:
                if err.code == "JobNotFound":  # deleted (retention) meanwhile: report what there is
                    return
                raise
            yield from (_task(task) for task in page)

    # ----- pools and nodes -------------------------------------------------------------------------

    def pool(self, pool_id: str) -> Pool | None:
        """The pool and how many nodes it has now; None if the account has no such pool."""
        try:
            model = self._call(self.client.get_pool, pool_id,
                               select=["id", "currentDedicatedNodes", "currentLowPriorityNodes"])
        except Refused as err:
            if err.code == "PoolNotFound":
                return None
            raise
        return Pool(id=model.id, nodes=(model.current_dedicated_nodes or 0) + (model.current_low_priority_nodes or 0))

    def node_file_tail(self, pool_id: str, node_id: str, path: str, max_bytes: int) -> bytes | None:
        """The last max_bytes of a file on a node (two calls: its size, then a ranged read); None if the
        node or the file is gone."""
        try:
            props = self._call(self.client.get_node_file_properties, pool_id, node_id, path)
            size = int(props.content_length or 0)
            if size == 0:
                return b""
            start = max(size - max_bytes, 0)
            chunks = self._call(self.client.download_node_file, pool_id, node_id, path,
                                ocp_range=f"bytes={start}-{size - 1}")
            return b"".join(chunks)
        except Refused as err:
            if err.code in ("NodeNotFound", "FileNotFound", "PoolNotFound", "OperationInvalidForCurrentState"):
                return None
            raise

    def _send(self, method: str, path: str, body: dict | None = None) -> None:
        """One plain REST call. The SDK's begin_terminate/begin_delete start a poller thread that keeps
        calling get_job; the watchdog wants exactly one call per action, so it sends the request itself."""
        request = HttpRequest(method, f"{path}?api-version={API_VERSION}", json=body,
                              headers={"Content-Type": "application/json; odata=minimalmetadata"})
        _checked(self._call(self.client.send_request, request))

    def terminate(self, job_id: str, reason: str) -> bool:
        """Ask Batch to end the job (this is what runs the release tasks). Already ending counts as done."""
        try:
            self._send("POST", f"/jobs/{quote(job_id)}/terminate", {"terminateReason": reason[:64]})
            return True
        except Refused as err:
            if err.code in ALREADY_ENDING or err.code == "JobNotFound":
                return False
            raise

    def delete(self, job_id: str) -> None:
        try:
            self._send("DELETE", f"/jobs/{quote(job_id)}")
        except Refused as err:
            if err.code not in ("JobNotFound", "JobBeingDeleted"):
                raise


class PoolDirectory:
    """Whether a pool exists, asked of Batch at most once per pool per `ttl` (Batch accepts a job for a pool
    that does not exist, and the job would then hold active-job quota until its deadline)."""

    def __init__(self, batch: BatchAdapter, ttl: timedelta = timedelta(minutes=5),
                 clock: Callable[[], float] = time.monotonic):
        self._batch, self._ttl, self._clock = batch, ttl.total_seconds(), clock
        self._known: dict[str, tuple[bool, float]] = {}
        self._lock = threading.Lock()

    def exists(self, pool_id: str) -> bool:
        with self._lock:
            cached = self._known.get(pool_id)
            if cached and self._clock() - cached[1] < self._ttl:
                return cached[0]
        found = self._batch.pool(pool_id) is not None
        with self._lock:
            self._known[pool_id] = (found, self._clock())
        return found
