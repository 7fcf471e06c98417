"""Reading a job's report for the HTTP API and the CLI, and the jobs list."""

from __future__ import annotations

import json
from collections.abc import Iterator

from shared.adapters.batch import BatchAdapter
from shared.adapters.store import Store
from shared.pure import jobs_list, metadata
from shared.pure.blob_layout import tasks_name
from shared.pure.report import outcome_only
from shared.pure.task_view import TaskView, build_view
from shared.pure.values import iso


def job_report(store: Store, job_id: str) -> dict | None:
    """The report; before collection has written one, a report of the outcome alone; None if neither."""
    found = store.report(job_id)
    if found is not None:
        return found
    outcome = store.outcome(job_id)
    return outcome_only(job_id, outcome) if outcome is not None else None


def _task_lines(store: Store, job_id: str) -> Iterator[dict]:
    for raw in store.reports.lines(tasks_name(job_id)):
        try:
            yield json.loads(raw)
        except ValueError:
            continue  # one bad line must not take the page down


def task_view(store: Store, job_id: str, report: dict) -> TaskView | None:
    """Every task of a finished job (tasks.jsonl, streamed once) as the page shows it; None before the job
    ended (tasks.jsonl is written with the outcome)."""
    if not report.get("outcome"):
        return None
    return build_view(report["outcome"], _task_lines(store, job_id))


def jobs_page(store: Store, batch: BatchAdapter, query: jobs_list.Query) -> dict:
    """One page of the jobs list: a Batch list call per 1,000 jobs and a listing of the report folders,
    then for the page's jobs only their report (or Batch's task counts, for a job still without one)."""
    in_batch = [jobs_list.Known(j.id, j.state, iso(j.creation_time)) for j in batch.list_jobs()
                if metadata.is_managed(j.metadata)]
    ordered = jobs_list.merge(in_batch, store.reports.folders())
    page, total = jobs_list.select(ordered, query)
    entries = []
    for job in page:
        report = job_report(store, job.job_id)
        counts = None
        if report is None and job.state != jobs_list.DELETED:
            counts = batch.task_counts(job.job_id).as_dict()
        entries.append(jobs_list.entry(job, report, counts))
    return jobs_list.listing(entries, total, query)
