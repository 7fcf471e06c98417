"""A completed job's outcome record (`job-reports/{jobId}/outcome.json`): what Batch said when it ended."""

from __future__ import annotations

from datetime import UTC, datetime

from shared.pure import metadata
from shared.pure.report import node_runs_rows
from shared.pure.values import Job, NodeRuns, TaskCounts


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat() if value else None


def outcome_record(job: Job, counts: TaskCounts, now: datetime) -> dict:
    try:
        meta = metadata.decode(job.metadata)
    except metadata.MetadataError:
        meta = None
    return {
        "jobId": job.id, "state": job.state, "terminateReason": job.terminate_reason,
        "createdAt": _iso(job.creation_time), "startedAt": _iso(job.start_time), "endedAt": _iso(job.end_time),
        "deadline": metadata.format_time(meta.deadline) if meta else None,
        "expectedTasks": meta.expected_tasks if meta else None,
        "taskCounts": counts.as_dict(),
        "recordedAt": now.astimezone(UTC).isoformat(),
    }


def outcome_document(job: Job, counts: TaskCounts, tasks: dict, runs: list[NodeRuns],
                     nodes_without_manifest: list[str], now: datetime) -> dict:
    """outcome.json: the outcome, the tasks summed up (TaskSummary.to_dict()), and per node that ran the job
    its prep and release results; everything the report needs from Batch, asked once."""
    return {**outcome_record(job, counts, now), "tasks": tasks, "nodes": node_runs_rows(runs),
            "nodesWithoutManifest": sorted(nodes_without_manifest)}
