"""report.json (schema job-report.v2), built incrementally: each node's collection, each crash dump and
the job's outcome merge their part into the report as they arrive, in any order.

Every merge takes the report as it is and returns it updated (the caller writes it back under the blob's
ETag), then `finish` recomputes the totals and whether collection is complete. The report stays small
whatever the job's size: counts per node and in all, the failed tasks up to a limit, crash groups with a
few examples each. The full lists live beside it (tasks.jsonl, index/{nodeId}.jsonl).

Where it crashed: a crash group has its dump's location (module+offset: the dump scanner reads no symbols)
and, when the task that left the dump printed a backtrace, that backtrace's frame and kind (`backtrace`,
with the task, node and log it came from). A failed task whose logs hold a backtrace lists its frame and
kind too, dump or not: a crash that left no dump is seen there (the page groups them by frame).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote, unquote

from shared.node.lognames import TASKS_PSEUDO_NODE
from shared.pure.node_record import COLLECTED, INVALID, REFUSED
from shared.pure.values import NodeRuns, TaskRun, iso

REPORT_SCHEMA = "job-report.v2"
CRASH_RECORD_SCHEMA = "job-crashdump.v1"
MAX_GROUPS = 100
MAX_GROUP_EXAMPLES = 3
MAX_GROUP_NAMES = 5  # nodes and tasks named per crash group
MAX_EXCERPT_LINES = 2
MAX_EXCERPT_CHARS = 160  # per line in the report (the node's index keeps 200)
MAX_REFUSED = 100
WAITING, NO_MANIFEST, NOTHING_TO_COLLECT = "waiting", "no manifest", "nothing to collect"
_CRASH_FIELDS = ("format", "executable", "signalName", "exceptionCode", "location")


def empty_report(job_id: str) -> dict[str, Any]:
    return {"schema": REPORT_SCHEMA, "jobId": job_id, "generatedAt": None, "outcome": None, "tasks": None,
            "collection": {"state": WAITING, "expectedNodes": None, "nodesWithoutManifest": [], "closedAt": None},
            "collectionComplete": False, "totals": {}, "nodes": [], "crashGroups": [], "refused": [],
            "refusedCount": 0}


def _rows(report: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {row["nodeId"]: dict(row) for row in report.get("nodes") or []}


def _with_rows(report: dict[str, Any], rows: dict[str, dict[str, Any]]) -> dict[str, Any]:
    report["nodes"] = [rows[k] for k in sorted(rows)]
    return report


def merge_node(report: dict[str, Any], row: Mapping[str, Any]) -> dict[str, Any]:
    """A node's collection (a report_row of its node record); keeps what the outcome said of the node.
    Once the outcome has said which nodes ran the job, any other is refused here too: its collection may
    have started before the outcome landed."""
    rows = _rows(report)
    current = rows.get(row["nodeId"], {})
    if current.get("status") == REFUSED:
        return report
    expected = (report.get("collection") or {}).get("expectedNodes")
    if expected is not None and row["nodeId"] not in expected:
        rows[row["nodeId"]] = _refuse_unexpected(report, dict(row))
        return _with_rows(report, rows)
    rows[row["nodeId"]] = {**current, **row}
    return _with_rows(report, rows)


def _refuse_unexpected(report: dict[str, Any], row: dict[str, Any]) -> dict[str, Any]:
    row.update(status=REFUSED, collected=False,
               refusedReason="Batch lists no preparation or release run of the job on this node")
    merge_refused(report, {"nodeId": row["nodeId"], "rule": "node_did_not_run_job", "runId": row.get("runId")})
    return row


def merge_refused(report: dict[str, Any], refused: Mapping[str, Any]) -> dict[str, Any]:
    """Count a refusal once: the same node run refused again (a redelivery) is the same refusal."""
    key = (refused.get("nodeId"), refused.get("runId"), refused.get("rule"))
    listed = report.setdefault("refused", [])
    if any((r.get("nodeId"), r.get("runId"), r.get("rule")) == key for r in listed):
        return report
    report["refusedCount"] = report.get("refusedCount", 0) + 1
    if len(listed) < MAX_REFUSED:
        listed.append(dict(refused))
    return report


def crash_record(job_id: str, summary: Mapping[str, Any], copy: Mapping[str, Any], seen_at: str) -> dict[str, Any]:
    """summary: CrashSummary.to_dict() of the uncompressed dump; copy: where this copy of it came from."""
    return {"schema": CRASH_RECORD_SCHEMA, "jobId": job_id, **dict(summary), "copies": [dict(copy)],
            "counted": False, "firstSeenAt": seen_at}


def add_copy(record: dict[str, Any], copy: Mapping[str, Any]) -> dict[str, Any]:
    """The same dump again (a failing task's own upload and the release task's): one dump, two copies."""
    if all(c.get("blob") != copy.get("blob") for c in record.get("copies", [])):
        record.setdefault("copies", []).append(dict(copy))
    return record


def merge_crash(report: dict[str, Any], record: Mapping[str, Any]) -> dict[str, Any]:
    """Count a dump once, in the group of its fingerprint (the same crash across nodes and runs). A record
    may carry the backtrace its task printed: the group shows the first it is given."""
    key = record.get("fingerprint") or record.get("sha256") or ""
    groups = {g["fingerprint"]: dict(g) for g in report.get("crashGroups") or []}
    if key not in groups and len(groups) >= MAX_GROUPS:
        key = "other"
    group = groups.setdefault(key, {"fingerprint": key, **{f: record.get(f) for f in _CRASH_FIELDS},
                                    "count": 0, "nodes": [], "tasks": [], "dumps": []})
    group["count"] += 1
    copy = (record.get("copies") or [{}])[0]
    for field_name, value in (("nodes", copy.get("nodeId")), ("tasks", copy.get("taskId"))):
        if value and value not in group[field_name] and len(group[field_name]) < MAX_GROUP_NAMES:
            group[field_name] = sorted([*group[field_name], value])
    if len(group["dumps"]) < MAX_GROUP_EXAMPLES:
        group["dumps"].append({"sha256": record.get("sha256"), "size": record.get("size"), **{
            k: copy[k] for k in ("nodeId", "taskId") if copy.get(k)}})
    if record.get("backtrace") and not group.get("backtrace"):
        group["backtrace"] = dict(record["backtrace"])
    groups[key] = group
    report["crashGroups"] = sorted(groups.values(), key=lambda g: (-g["count"], g["fingerprint"]))
    return report


def _run(run: TaskRun | None, prefix: str) -> dict[str, Any]:
    run = run or TaskRun()
    out = {f"{prefix}ExitCode": run.exit_code, f"{prefix}Result": run.result}
    if run.start_time:  # for the report page's timeline
        out.update({f"{prefix}Start": iso(run.start_time), f"{prefix}End": iso(run.end_time)})
    if run.state not in (None, "completed"):
        out[f"{prefix}State"] = run.state  # still running, or never started, when the job ended
    if run.failure:
        out[f"{prefix}Failure"] = run.failure
    return out


def node_runs_rows(runs: Iterable[NodeRuns]) -> list[dict[str, Any]]:
    return [{"nodeId": r.node_id, **_run(r.preparation, "prep"), **_run(r.release, "release")}
            for r in sorted(runs, key=lambda r: r.node_id)]


def merge_outcome(report: dict[str, Any], outcome: Mapping[str, Any],
                  excerpts: Mapping[str, list[str]] | None = None) -> dict[str, Any]:
    """The job's outcome as recorded when it ended (outcome.json): Batch's word on which nodes ran it, their
    prep and release results, and the tasks. A node collected before this that Batch does not list as
    having run the job is refused now."""
    report["outcome"] = {k: v for k, v in outcome.items() if k not in ("tasks", "nodes", "nodesWithoutManifest")}
    tasks = dict(outcome.get("tasks") or {})
    per_node = tasks.pop("perNode", {})
    listed = []
    for task in tasks.get("failed") or []:
        excerpt = (excerpts or {}).get(task["id"])
        entry = {k: v for k, v in task.items() if v is not None}
        listed.append({**entry, "excerpt": _excerpt(excerpt)} if excerpt else entry)
    tasks["failed"] = listed
    report["tasks"] = tasks
    rows = _rows(report)
    expected = sorted(n["nodeId"] for n in outcome.get("nodes") or [])
    without = set(outcome.get("nodesWithoutManifest") or [])
    for node in outcome.get("nodes") or []:
        counts = per_node.get(node["nodeId"], {})
        row = rows.setdefault(node["nodeId"], {"nodeId": node["nodeId"], "status": WAITING, "collected": False})
        row.update(node, tasksRun=counts.get("run", 0), tasksFailed=counts.get("failed", 0))
        if node["nodeId"] in without and row.get("status") == WAITING:
            # A node whose preparation failed runs no release task: it has nothing to upload.
            row["status"] = NOTHING_TO_COLLECT if node.get("prepResult") == "failure" else NO_MANIFEST
    for node_id, row in rows.items():
        if node_id not in expected and row.get("status") != REFUSED:
            _refuse_unexpected(report, row)
    collection = report.setdefault("collection", {})
    collection["expectedNodes"] = expected
    collection["nodesWithoutManifest"] = sorted(without)
    return _with_rows(report, rows)


def _excerpt(lines: list[str]) -> list[str]:
    return [line[:MAX_EXCERPT_CHARS] for line in lines[:MAX_EXCERPT_LINES]]


def fill_excerpts(report: dict[str, Any], excerpts: Mapping[str, list[str]], node_id: str,
                  backtraces: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """A node collected after the outcome: the first error lines of the failed tasks that ran on it, and
    where they crashed (a task retried on another node, or another node's upload, does not speak for it)."""
    tasks = report.get("tasks") or {}
    for task in tasks.get("failed") or []:
        if task.get("nodeId") != node_id:
            continue
        if "excerpt" not in task and task["id"] in excerpts:
            task["excerpt"] = _excerpt(excerpts[task["id"]])
        if "backtrace" not in task and task["id"] in (backtraces or {}):
            task["backtrace"] = brief_backtrace(backtraces[task["id"]])
    return report


def brief_backtrace(trace: Mapping[str, Any], task_id: str | None = None, node_id: str | None = None,
                    ) -> dict[str, Any]:
    """A backtrace as the report keeps it: its frame and kind (a failed task), and for a crash group the
    task, node and log (stdout or stderr) it came from. 500 failed tasks and 100 groups carry one."""
    out = {"kind": trace.get("kind"), "frame": trace.get("frame")}
    if task_id is not None:
        out.update(taskId=task_id, nodeId=node_id)
        path = str(trace.get("path") or "")
        if path:
            out["log"] = path.rsplit("/", 1)[-1].removesuffix(".txt")
    return out


def _backtrace_from_failed(report: Mapping[str, Any], groups: list[dict[str, Any]]) -> None:
    """A group whose dumps no node record spoke for (a failing task's own upload only): the backtrace of
    one of its tasks from the failed list, when it ran on the dump's node."""
    failed = {t["id"]: t for t in (report.get("tasks") or {}).get("failed") or [] if t.get("backtrace")}
    for group in groups:
        for dump in group["dumps"] if not group.get("backtrace") else ():
            task = failed.get(dump.get("taskId"))
            if task and dump.get("nodeId") in (None, task.get("nodeId")):
                group["backtrace"] = brief_backtrace(task["backtrace"], task["id"], task.get("nodeId"))
                break


_META_FIELDS = {"fingerprint": "fingerprint", "format": "format", "executable": "executable",
                "signalName": "signalname", "exceptionCode": "exceptioncode", "location": "location"}


def crash_metadata(record: Mapping[str, Any]) -> dict[str, str]:
    """What a listing of crash records needs to group them again: Blob metadata, ASCII only."""
    out = {key: quote(str(record[field]), safe="") for field, key in _META_FIELDS.items() if record.get(field)}
    out["size"] = str(int(record.get("size") or 0))
    nodes = sorted({c.get("nodeId") or TASKS_PSEUDO_NODE for c in record.get("copies") or []})
    tasks = sorted({c["taskId"] for c in record.get("copies") or [] if c.get("taskId")})
    out["nodes"] = quote(",".join(nodes[:20]), safe=",")
    out["tasks"] = quote(",".join(tasks[:20]), safe=",")
    return out


def recount_crashes(report: dict[str, Any], listed: Iterable[tuple[str, Mapping[str, str]]],
                    backtraces: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """The crash groups again, exactly, from every crash record of the job (sha256, its metadata): each
    distinct dump once, and none that only nodes refused (another job's) uploaded. Done when collection
    closes; until then the groups grew one dump at a time. backtraces: by dump sha256, what its task
    printed, brief_backtrace'd (from the node records of the nodes that uploaded the dumps)."""
    expected = set((report.get("collection") or {}).get("expectedNodes") or ())
    rebuilt: dict[str, Any] = {"crashGroups": []}
    for sha256, meta in listed:
        nodes = [n for n in unquote(meta.get("nodes", "")).split(",") if n]
        if nodes and not any(n == TASKS_PSEUDO_NODE or n in expected for n in nodes):
            continue
        tasks = [t for t in unquote(meta.get("tasks", "")).split(",") if t]
        own = next((n for n in nodes if n in expected), None)
        record = {"sha256": sha256, "size": int(meta.get("size", "0") or 0),
                  **{field: unquote(meta[key]) if key in meta else None for field, key in _META_FIELDS.items()},
                  "copies": [{"nodeId": own, "taskId": tasks[0] if tasks else None}],
                  "backtrace": (backtraces or {}).get(sha256)}
        merge_crash(rebuilt, record)
    _backtrace_from_failed(report, rebuilt["crashGroups"])
    report["crashGroups"] = rebuilt["crashGroups"]
    return report


def finish(report: dict[str, Any], now: str) -> dict[str, Any]:
    """Totals and the collection's state, from what has been merged. Collection is complete once the
    outcome says which nodes ran the job and each of them that left a manifest has been collected; it
    then closes, and later uploads are refused."""
    rows = [r for r in report.get("nodes") or [] if r.get("status") != REFUSED]
    collection = report.setdefault("collection", {})
    expected = collection.get("expectedNodes")
    by_id = {r["nodeId"]: r for r in rows}
    if expected is None:
        complete = False
        state = "collecting" if rows else WAITING
    else:
        done = (COLLECTED, INVALID, NO_MANIFEST, NOTHING_TO_COLLECT)
        waiting_for = [n for n in expected if by_id.get(n, {}).get("status") not in done]
        complete = not waiting_for
        state = "complete" if complete else "collecting"
        collection["waitingFor"] = waiting_for[:100]
        if complete and not collection.get("closedAt"):
            collection["closedAt"] = now
    collection["state"] = state
    collection["collectedNodes"] = sum(1 for r in rows if r.get("status") == COLLECTED)
    report["collectionComplete"] = complete
    groups = report.get("crashGroups") or []
    report["totals"] = {
        "nodes": len(rows),
        "nodesCollected": collection["collectedNodes"],
        "files": sum(r.get("files", 0) for r in rows),
        "bytes": sum(r.get("bytes", 0) for r in rows),
        "lines": sum(r.get("lines", 0) for r in rows),
        "errorLines": sum(r.get("errorLines", 0) for r in rows),
        "uploadFailures": sum(r.get("uploadFailureCount", 0) for r in rows),
        "crashDumps": sum(g["count"] for g in groups),
        "crashGroups": len(groups),
        "refused": report.get("refusedCount", 0),
    }
    report["generatedAt"] = now
    return report


def is_final(report: Mapping[str, Any] | None) -> bool:
    """The job's outcome is in and every node that ran it is collected: the report will not change."""
    return bool(report and report.get("outcome") and report.get("collectionComplete"))


def outcome_only(job_id: str, outcome: Mapping[str, Any], now: str | None = None) -> dict[str, Any]:
    """The report of a job whose outcome is recorded but whose collection has not written a report yet."""
    return finish(merge_outcome(empty_report(job_id), outcome), now or outcome.get("recordedAt") or "")
