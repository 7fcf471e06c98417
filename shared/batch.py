"""The Batch adapter: the orchestrator's only door to Azure Batch, through the azure-batch SDK.

It speaks in REST-shaped dicts and a few exceptions the core understands: Transient (retry later),
QuotaReached (the account's active-job quota; wait, don't fail) and Refused (a permanent client error).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import azure.batch.models as m
from azure.batch import BatchClient
from azure.core.exceptions import AzureError, HttpResponseError, ServiceRequestError
from azure.core.rest import HttpRequest

log = logging.getLogger("orchestrator.batch")

API_VERSION = "2025-06-01"
TRANSIENT_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
JOB_LIST_SELECT = ["id", "state", "metadata", "creationTime", "stateTransitionTime", "executionInfo"]
ALREADY_ENDING = frozenset({"JobCompleted", "JobBeingTerminated", "JobBeingDeleted"})


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
class Counter:
    """Counts the Batch calls a piece of work made (benchmarks and the watchdog's cost report)."""

    calls: int = 0


def _node_entry(node_id: str, prep: dict | None = None, release: dict | None = None) -> dict[str, Any]:
    prep, release = prep or {}, release or {}
    return {"nodeId": node_id, "prepExitCode": prep.get("exitCode"), "prepResult": prep.get("result"),
            "releaseExitCode": release.get("exitCode"), "releaseResult": release.get("result"), "tasks": []}


class BatchAdapter:
    def __init__(self, client: BatchClient, counter: Counter | None = None):
        self.client = client
        self.counter = counter or Counter()

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

    def get_job(self, job_id: str) -> dict | None:
        try:
            return self._call(self.client.get_job, job_id).as_dict()
        except Refused as err:
            if err.code == "JobNotFound":
                return None
            raise

    def create_job(self, body: dict) -> bool:
        """Create the job; False if it already exists (a concurrent or earlier delivery made it)."""
        try:
            self._call(self.client.create_job, m.BatchJobCreateOptions(body))
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

    def finish_submission(self, job_id: str, metadata_items: list[dict]) -> None:
        update = m.BatchJobUpdateOptions({"onAllTasksComplete": "terminatejob", "metadata": metadata_items})
        self._call(self.client.update_job, job_id, update)

    def list_jobs(self, page_size: int = 1000) -> Iterator[dict]:
        """Every job, page by page: one Batch call per page of up to 1,000 jobs."""
        pages = self.client.list_jobs(select=JOB_LIST_SELECT, max_results=page_size).by_page()
        while True:
            try:
                page = list(self._call(next, pages))
            except StopIteration:
                self.counter.calls -= 1  # the pager found no next link: no request was made
                return
            yield from (job.as_dict() for job in page)

    def task_counts(self, job_id: str) -> dict:
        return self._call(self.client.get_job_task_counts, job_id).task_counts.as_dict()

    def prep_status(self, job_id: str) -> list[dict]:
        try:
            return [s.as_dict() for s in self._call(
                lambda: list(self.client.list_job_preparation_and_release_task_status(job_id)))]
        except Refused as err:
            if err.code in ("JobPreparationTaskNotSpecified", "JobNotFound"):
                return []
            raise

    def tasks(self, job_id: str) -> list[dict]:
        select = ["id", "state", "nodeInfo", "executionInfo"]
        return [t.as_dict() for t in self._call(lambda: list(self.client.list_tasks(job_id, select=select)))]

    def _send(self, method: str, path: str, body: dict | None = None) -> None:
        """One plain REST call. The SDK's begin_terminate/begin_delete start a poller thread that keeps
        calling get_job; the watchdog wants exactly one call per action, so it sends the request itself."""
        request = HttpRequest(method, f"{path}?api-version={API_VERSION}", json=body,
                              headers={"Content-Type": "application/json; odata=minimalmetadata"})
        response = self._call(self.client.send_request, request)
        if response.status_code >= 400:
            try:
                body = response.json()
            except ValueError:
                body = {}
            body = body if isinstance(body, dict) else {}
            raise _classify(response.status_code, body.get("code") or "",
                            (body.get("message") or {}).get("value") or "")

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

    def node_statuses(self, job_id: str) -> list[dict[str, Any]]:
        """Per node: prep and release exit codes and the tasks it ran, for the report."""
        nodes: dict[str, dict[str, Any]] = {}
        for status in self.prep_status(job_id):
            nodes[status["nodeId"]] = _node_entry(status["nodeId"], status.get("jobPreparationTaskExecutionInfo"),
                                                  status.get("jobReleaseTaskExecutionInfo"))
        try:
            tasks = self.tasks(job_id)
        except Refused as err:  # the job went (retention) between the two calls: report what there is
            if err.code != "JobNotFound":
                raise
            tasks = []
        for task in tasks:
            node_id = (task.get("nodeInfo") or {}).get("nodeId")
            if not node_id:
                continue
            info = task.get("executionInfo") or {}
            entry = nodes.setdefault(node_id, _node_entry(node_id))
            entry["tasks"].append({"id": task["id"], "state": task.get("state"), "exitCode": info.get("exitCode"),
                                   "result": info.get("result")})
        return sorted(nodes.values(), key=lambda n: n["nodeId"])
