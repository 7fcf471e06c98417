"""A completed job's outcome record (`job-reports/{jobId}/outcome.json`): what Batch said when it ended."""

from __future__ import annotations

from datetime import UTC, datetime

from shared.pure import metadata
from shared.pure.redact import redact_secrets
from shared.pure.report import node_runs_rows
from shared.pure.values import Job, NodeRuns, TaskCounts, iso


def outcome_record(job: Job, counts: TaskCounts, now: datetime) -> dict:
    meta = metadata.decode_or_none(job.metadata)
    return {
        "jobId": job.id, "state": job.state, "terminateReason": job.terminate_reason,
        "createdAt": iso(job.creation_time), "startedAt": iso(job.start_time), "endedAt": iso(job.end_time),
        "deadline": metadata.format_time(meta.deadline) if meta else None,
        "expectedTasks": meta.expected_tasks if meta else None,
        "taskCounts": counts.as_dict(),
        "recordedAt": now.astimezone(UTC).isoformat(),
    }


MAX_TAIL_LINES = 20
MAX_TAIL_LINE_CHARS = 300


def tail_lines(data: bytes | None) -> list[str]:
    """The end of a task's output as lines a user can read: whole lines only, cut, secrets redacted."""
    if not data:
        return []
    lines = data.decode("utf-8", "replace").splitlines()[-MAX_TAIL_LINES:]
    return [redact_secrets(line[:MAX_TAIL_LINE_CHARS * 2])[:MAX_TAIL_LINE_CHARS] for line in lines]


def outcome_document(job: Job, counts: TaskCounts, tasks: dict, runs: list[NodeRuns],
                     nodes_without_manifest: list[str], now: datetime,
                     prep_output: dict[str, dict[str, bytes | None]] | None = None) -> dict:
    """outcome.json: the outcome, the tasks summed up (TaskSummary.to_dict()), and per node that ran the job
    its prep and release results, with the end of a failed preparation task's stdout and stderr;
    everything the report needs from Batch, asked once.

    prep_output: {nodeId: {"stdout": bytes, "stderr": bytes}} for nodes whose preparation failed."""
    rows = node_runs_rows(runs)
    messages = {r.node_id: r.preparation.failure_message for r in runs if r.preparation}
    for row in rows:
        output = (prep_output or {}).get(row["nodeId"])
        if output is not None:
            row["prepOutput"] = {"message": (messages.get(row["nodeId"]) or "")[:500] or None,
                                 "stdoutTail": tail_lines(output.get("stdout")),
                                 "stderrTail": tail_lines(output.get("stderr"))}
    return {**outcome_record(job, counts, now), "tasks": tasks, "nodes": rows,
            "nodesWithoutManifest": sorted(nodes_without_manifest)}
