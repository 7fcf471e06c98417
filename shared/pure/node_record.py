"""One node's collection, added up file by file as its bundle streams past, in bounded memory.

The node record (`job-reports/{jobId}/nodes/{nodeId}.json`) keeps totals, what went wrong and, per task
whose logs had error lines, the first of them, and per task whose logs hold a backtrace, where it crashed
(also on each crash dump the node uploaded for a task, so its crash group can say it); the full per-file
index goes line by line to `index/{nodeId}.jsonl`, never into memory.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from shared.node import lognames
from shared.pure.backtrace import Backtrace
from shared.pure.logscan import LogSummary
from shared.pure.manifest import Manifest, Upload

NODE_RECORD_SCHEMA = "job-node.v2"
INDEX_SCHEMA = "job-file.v2"
MAX_EXCERPT_TASKS = 500  # tasks whose first error lines a node record keeps (the report lists 500 failed)
MAX_LISTED = 50
COLLECTED, REFUSED, INVALID = "collected", "refused", "invalid"
# Task outputs sit at job-1/{taskId}/stdout.txt and stderr.txt on a Batch node.
_TASK_OUTPUT = re.compile(re.escape(lognames.TASKS_DIR) + r"/(?P<task>[A-Za-z0-9_-]{1,64})/(?P<stream>stdout|stderr)\.txt")


@dataclass(frozen=True)
class Refusal:
    rule: str
    message: str


def refusal(report: dict | None, node_id: str, run_id: str, existing: dict | None) -> Refusal | None:
    """Whether a node's upload is refused: from a node that did not run the job, or arriving after the
    job's collection closed. A redelivery of what was already collected is not refused (it is a no-op)."""
    if existing and existing.get("runId") == run_id:
        return None
    collection = (report or {}).get("collection") or {}
    expected = collection.get("expectedNodes")
    if expected is not None and node_id not in expected:
        return Refusal("node_did_not_run_job", f"Batch lists no preparation or release run of the job on {node_id}")
    if collection.get("closedAt"):
        return Refusal("after_collection_closed", f"arrived after the job's collection closed at {collection['closedAt']}")
    return None


def keep_for_task(kept: dict[str, Any], task_id: str, stream: str, value: Any, limit: int) -> None:
    """What a task's output says (its first error lines, its backtrace), stderr's over stdout's: it is where
    a failing task says why, and where runtimes print a crash."""
    if task_id in kept:
        if stream == "stderr":
            kept[task_id] = value
    elif len(kept) < limit:
        kept[task_id] = value


def task_backtrace(path: str, backtrace: Backtrace) -> dict[str, Any]:
    """A backtrace as a node record keeps it: with the log it was read from."""
    return {**backtrace.to_dict(), "path": path}


@dataclass(frozen=True)
class TaskDetails:
    """What a node's logs say of some of its tasks: their first error lines and where they crashed."""
    excerpts: dict[str, list[str]] = field(default_factory=dict)
    backtraces: dict[str, dict[str, Any]] = field(default_factory=dict)


def details_from_index(lines, wanted: set[str]) -> TaskDetails:
    """The first error lines and the backtraces of the wanted tasks, from a node's index lines (dicts), in
    one pass."""
    found = TaskDetails()
    for line in lines:
        task = task_of(line.get("path", ""))
        if not task or task[0] not in wanted:
            continue
        if line.get("firstErrors"):
            keep_for_task(found.excerpts, task[0], task[1], list(line["firstErrors"]), len(wanted))
        if line.get("backtrace"):
            keep_for_task(found.backtraces, task[0], task[1], {**line["backtrace"], "path": line["path"]},
                         len(wanted))
    return found


def index_line(path: str, summary: LogSummary, original: str | None = None,
               backtrace: Backtrace | None = None) -> dict[str, Any]:
    line = {"schema": INDEX_SCHEMA, "path": path, "size": summary.size, "sha256": summary.sha256,
            "lines": summary.lines, "errorLines": summary.error_lines, "firstErrors": summary.first_errors}
    if backtrace is not None:
        line["backtrace"] = backtrace.to_dict()
    if original is not None:
        line["original"] = original
    return line


def task_of(path: str) -> tuple[str, str] | None:
    """(task id, "stdout" or "stderr") for a task's own output file."""
    match = _TASK_OUTPUT.fullmatch(path)
    return (match["task"], match["stream"]) if match else None


@dataclass
class NodeTally:
    job_id: str
    node_id: str
    manifest: Manifest
    files: int = 0
    bytes: int = 0
    lines: int = 0
    error_lines: int = 0
    excerpts: dict[str, list[str]] = field(default_factory=dict)
    backtraces: dict[str, dict[str, Any]] = field(default_factory=dict)
    backtrace_files: int = 0
    # The failed tasks the report lists, when the outcome came first: theirs are the excerpts and backtraces
    # to keep.
    wanted: frozenset[str] | None = None
    problems: list[str] = field(default_factory=list)
    problem_count: int = 0
    renamed: list[dict] = field(default_factory=list)
    renamed_count: int = 0
    unexpected: list[str] = field(default_factory=list)
    unexpected_count: int = 0

    def __post_init__(self):
        # The tasks whose crash dumps the node uploaded (a handful): their backtraces are kept whatever the
        # limits, for the dumps' crash groups.
        self._dump_tasks = {lognames.task_of(d.path) for d in self.manifest.crash_dumps} - {None}
        self._dump_backtraces: dict[str, dict[str, Any]] = {}

    def add(self, path: str, summary: LogSummary, backtrace: Backtrace | None = None) -> dict[str, Any]:
        """One file of the bundle; returns its index line. A path that breaks the naming rules (written by
        something other than our uploader) is indexed under a safe name, with the original kept."""
        stored, original = lognames.safe_path(path)
        if original is not None:
            self.renamed_count += 1
            if len(self.renamed) < MAX_LISTED:
                self.renamed.append({"path": stored, "original": original})
        self.files += 1
        self.bytes += summary.size
        self.lines += summary.lines
        self.error_lines += summary.error_lines
        task = task_of(stored)
        limit = MAX_EXCERPT_TASKS if self.wanted is None else len(self.wanted)
        if task and summary.first_errors and (self.wanted is None or task[0] in self.wanted):
            keep_for_task(self.excerpts, task[0], task[1], list(summary.first_errors), limit)
        if backtrace is not None:
            self.backtrace_files += 1
            if task and (self.wanted is None or task[0] in self.wanted):
                keep_for_task(self.backtraces, task[0], task[1], task_backtrace(stored, backtrace), limit)
            if task and task[0] in self._dump_tasks:
                keep_for_task(self._dump_backtraces, task[0], task[1], task_backtrace(stored, backtrace),
                             len(self._dump_tasks))
        return index_line(stored, summary, original, backtrace)

    def problem(self, text: str) -> None:
        self.problem_count += 1
        if len(self.problems) < MAX_LISTED:
            self.problems.append(text)

    def stray(self, blob_name: str) -> None:
        """A blob under the node's prefix that its manifest does not account for."""
        self.unexpected_count += 1
        if len(self.unexpected) < 20:
            self.unexpected.append(lognames.preview(blob_name))

    def record(self, collected_at: str) -> dict[str, Any]:
        m = self.manifest
        bundle = None if m.bundle is None else {
            "blob": m.bundle.blob, "size": m.bundle.stored_size, "sha256": m.bundle.sha256,
            "entries": m.bundle.entries, "parts": [{"blob": p.blob, "size": p.size} for p in m.bundle.parts]}
        return {
            "schema": NODE_RECORD_SCHEMA, "jobId": self.job_id, "nodeId": self.node_id, "runId": m.run_id,
            "status": COLLECTED, "collected": True, "collectedAt": collected_at,
            "uploadStartedAt": m.started_at, "uploadFinishedAt": m.finished_at, "bundle": bundle,
            "files": self.files, "bytes": self.bytes, "lines": self.lines, "errorLines": self.error_lines,
            "crashDumps": [self._dump(d) for d in m.crash_dumps],
            "crashDumpCount": len(m.crash_dumps),
            "uploadFailures": list(m.failed[:MAX_LISTED]), "uploadFailureCount": m.failed_count,
            "renamed": (list(m.renamed) + self.renamed)[:MAX_LISTED],
            "renamedCount": m.renamed_count + self.renamed_count,
            "problems": list(self.problems), "problemCount": self.problem_count,
            "unexpectedBlobs": list(self.unexpected), "unexpectedBlobCount": self.unexpected_count,
            "excerpts": dict(self.excerpts), "backtraces": dict(self.backtraces),
            "backtraceFiles": self.backtrace_files, "index": f"index/{self.node_id}.jsonl",
        }

    def _dump(self, dump: Upload) -> dict[str, Any]:
        backtrace = self._dump_backtraces.get(lognames.task_of(dump.path) or "")
        return {"path": dump.path, "blob": dump.blob, "sha256": dump.sha256, "size": dump.size,
                "parts": [{"blob": p.blob, "size": p.size} for p in dump.parts],
                **({"original": dump.original} if dump.original else {}),
                **({"backtrace": backtrace} if backtrace else {})}


def invalid_record(job_id: str, node_id: str, reason: str, collected_at: str) -> dict[str, Any]:
    return {"schema": NODE_RECORD_SCHEMA, "jobId": job_id, "nodeId": node_id, "runId": None, "status": INVALID,
            "collected": False, "collectedAt": collected_at, "manifestError": reason}


def refused_record(job_id: str, node_id: str, run_id: str | None, refused: Refusal, at: str) -> dict[str, Any]:
    return {"schema": "job-refused.v1", "jobId": job_id, "nodeId": node_id, "runId": run_id, "rule": refused.rule,
            "message": refused.message, "refusedAt": at}


_ROW_COUNTS = ("crashDumpCount", "uploadFailureCount", "renamedCount", "problemCount", "unexpectedBlobCount")


def report_row(record: dict[str, Any]) -> dict[str, Any]:
    """What the report keeps of a node record: counts, not lists, and of the rarer counts only those that
    are not zero (a report lists every node, and a pool may have a thousand)."""
    row = {k: record[k] for k in ("nodeId", "runId", "status", "collected", "files", "bytes", "lines", "errorLines",
                                  "manifestError") if k in record}
    row.update({k: record[k] for k in _ROW_COUNTS if record.get(k)})
    return row
