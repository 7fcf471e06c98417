"""The watchdog's outcome step for a job Batch has completed: the one time Batch is asked about the job's
tasks and nodes. Their results go to outcome.json and tasks.jsonl and merge into the report.

Order matters: the report first, the outcome's marker last, so a step cut short is simply done again by
the next sweep (every write here replaces what an earlier attempt wrote).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime

from shared.adapters.batch import BatchAdapter
from shared.adapters.store import Store
from shared.flows.collect import index_details, update_report
from shared.node import lognames
from shared.pure import blob_layout as layout
from shared.pure import report as reports_model
from shared.pure.node_record import COLLECTED, TaskDetails
from shared.pure.outcome import outcome_document
from shared.pure.planning import PREP_ID as PREP_TASK_ID
from shared.pure.redact import redacting_logger
from shared.pure.setup_summary import setup_summary
from shared.pure.task_summary import TaskSummary, task_line
from shared.pure.values import Job, iso

log = redacting_logger("orchestrator.outcome")


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
    doc = outcome_document(job, counts, summary.to_dict(), runs, without, now, _prep_output(batch, job, runs))
    saved = store.reports.read_json(layout.request_name(job.id)) or {}
    setup = setup_summary(saved.get("request"))
    def merged(r: dict) -> dict:
        r = {**reports_model.merge_outcome(r, doc), **({"setup": setup} if setup else {})}
        # The first error lines and backtraces of failed tasks on nodes collected before this merge (a node
        # collected after it fills in its own), in the same write: a reader never sees the collection complete
        # without them.
        return _fill_all(r, _details(store, job.id, r))

    update_report(store.reports, job.id, now, merged, store.logs)
    store.write_outcome(job.id, doc)
    log.info("outcome recorded", extra={"job": job.id, "reason": job.terminate_reason, "tasks": summary.total,
                                        "failed": summary.failed_total, "nodes": len(runs),
                                        "withoutManifest": len(without), "at": iso(now)})
    return doc


MAX_PREP_FAILURES_READ = 20
PREP_TAIL_BYTES = 8192


def _prep_output(batch: BatchAdapter, job: Job, runs) -> dict[str, dict[str, bytes | None]]:
    """The end of stdout and stderr of each failed preparation task (a few nodes' worth: they are
    usually alike), read through Batch's node file API while the node still has them."""
    failed = [r.node_id for r in runs if r.preparation and r.preparation.result == "failure"]
    out: dict[str, dict[str, bytes | None]] = {}
    for node_id in failed[:MAX_PREP_FAILURES_READ]:
        folder = f"workitems/{job.id}/{lognames.TASKS_DIR}/{PREP_TASK_ID}"
        out[node_id] = {stream: batch.node_file_tail(job.pool_id, node_id, f"{folder}/{stream}.txt", PREP_TAIL_BYTES)
                        for stream in ("stdout", "stderr")} if job.pool_id else {}
    return out


def _fill_all(report: dict, found: dict[str, TaskDetails]) -> dict:
    for node_id, details in found.items():
        report = reports_model.fill_excerpts(report, details.excerpts, node_id, details.backtraces)
    return report


def _details(store: Store, job_id: str, report: dict) -> dict[str, TaskDetails]:
    """Per collected node, the first error lines and backtraces of the listed failed tasks that ran on it
    and have no excerpt yet, from one pass over that node's index."""
    collected = {r["nodeId"] for r in report.get("nodes") or [] if r.get("status") == COLLECTED}
    wanted: dict[str, set[str]] = {}
    for task in (report.get("tasks") or {}).get("failed") or []:
        if task.get("nodeId") in collected and not task.get("excerpt"):
            wanted.setdefault(task["nodeId"], set()).add(task["id"])
    found: dict[str, TaskDetails] = {}
    for node_id, ids in wanted.items():
        hits = index_details(store.reports, job_id, node_id, ids)
        if hits.excerpts or hits.backtraces:
            found[node_id] = hits
    return found
