"""The watchdog's outcome step for a job Batch has completed: the one time Batch is asked about the job's
tasks and nodes. Their results go to outcome.json and tasks.jsonl and merge into the report.

Order matters: the report first, the outcome's marker last, so a step cut short is simply done again by
the next sweep (every write here replaces what an earlier attempt wrote).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime

from shared.adapters.batch import BatchAdapter
from shared.adapters.store import Store
from shared.flows.collect import update_report
from shared.pure import blob_layout as layout
from shared.pure import report as reports_model
from shared.pure.node_record import excerpts_from_index
from shared.pure.outcome import outcome_document
from shared.pure.task_summary import TaskSummary, task_line
from shared.pure.values import Job

log = logging.getLogger("orchestrator.outcome")


def record_outcome(batch: BatchAdapter, store: Store, job: Job, now: datetime) -> dict:
    counts = batch.task_counts(job.id)
    runs = batch.node_runs(job.id)
    summary = TaskSummary()

    def lines() -> Iterator[bytes]:
        for task in batch.tasks(job.id):
            summary.add(task)
            yield (json.dumps(task_line(task)) + "\n").encode()

    store.reports.write_stream(layout.tasks_name(job.id), lines(), "application/x-ndjson")
    # The release task writes the manifest last and Batch completes the job only after every release task
    # ended: a node with no manifest by now will not send one.
    without = [r.node_id for r in runs if not store.logs.exists(layout.manifest_name(job.id, r.node_id))]
    doc = outcome_document(job, counts, summary.to_dict(), runs, without, now)
    excerpts = _excerpts(store, job.id, summary)
    update_report(store.reports, job.id, now, lambda r: reports_model.merge_outcome(r, doc, excerpts))
    store.write_outcome(job.id, doc)
    log.info("outcome recorded", extra={"job": job.id, "reason": job.terminate_reason, "tasks": summary.total,
                                        "failed": summary.failed_total, "nodes": len(runs),
                                        "withoutManifest": len(without), "at": now.astimezone(UTC).isoformat()})
    return doc


def _excerpts(store: Store, job_id: str, summary: TaskSummary) -> dict[str, list[str]]:
    """First error lines of the failed tasks the report lists, from the indexes of the nodes collected so
    far (one pass over the index of each node that ran such a task); a node collected later adds its own."""
    wanted: dict[str, set[str]] = {}
    for task in summary.failed_listed:
        if task.get("nodeId"):
            wanted.setdefault(task["nodeId"], set()).add(task["id"])
    found: dict[str, list[str]] = {}
    for node_id, ids in wanted.items():
        lines = (json.loads(raw) for raw in store.reports.lines(layout.index_name(job_id, node_id)))
        found.update(excerpts_from_index(lines, ids))
    return found
