"""A completed job's outcome record (`job-reports/{jobId}/outcome.json`): what Batch said when it ended."""

from __future__ import annotations

from datetime import UTC, datetime

from shared.pure import metadata
from shared.pure.values import Job, TaskCounts


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
