"""The report page: one job's report.json as a self-contained HTML page (pure: report in, text out).

Everything shown comes from files the release tasks uploaded and names users chose, so every value is
escaped; the page loads nothing from elsewhere (inline style only), so it also works offline and under a
strict Content-Security-Policy.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from html import escape
from typing import Any

CONTENT_SECURITY_POLICY = "default-src 'none'; style-src 'unsafe-inline'"
# A page for a job of 100,000 tasks must still open: long lists are cut, report.json has them all.
MAX_ROWS = 1000
MAX_TASK_IDS = 200

_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222}
h1{font-size:1.4em}h2{font-size:1.1em;margin-top:1.6em}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left;vertical-align:top}
td.n{text-align:right}.bad{color:#b00020;font-weight:600}.ok{color:#1b6e20}.muted{color:#777}
code{font-family:ui-monospace,monospace;word-break:break-all}
"""


def _text(value: Any) -> str:
    return "-" if value is None or value == "" else escape(str(value))


def _code(value: Any) -> str:
    return f"<code>{_text(value)}</code>"


def _exit(code: Any) -> str:
    if code is None:
        return '<span class="muted">-</span>'
    return f'<span class="{"ok" if code == 0 else "bad"}">{escape(str(code))}</span>'


def _more(total: int, shown: int, what: str) -> str:
    return f'<p class="muted">{total - shown} more {what} not shown; report.json lists them all.</p>' \
        if total > shown else ""


def _table(headers: Iterable[str], rows: list[list[str]], numeric: frozenset[int] = frozenset()) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f'<td class="n">{c}</td>' if i in numeric else f"<td>{c}</td>" for i, c in enumerate(row))
        + "</tr>"
        for row in rows[:MAX_ROWS]
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>" + _more(len(rows), MAX_ROWS, "rows")


def _summary(report: Mapping[str, Any]) -> str:
    outcome = report.get("outcome") or {}
    counts = outcome.get("taskCounts") or {}
    totals = report.get("totals") or {}
    tasks = report.get("tasks") or {}
    collection = report.get("collection") or {}
    complete = report.get("collectionComplete")
    durations = tasks.get("durationSeconds") or {}
    rows = [
        ["state", _text(outcome.get("state") or "running (no outcome recorded yet)")],
        ["ended because", _text(outcome.get("terminateReason"))],
        ["tasks", ", ".join(f"{escape(k)} {_text(counts.get(k))}"
                            for k in ("completed", "succeeded", "failed", "running", "active")) if counts else "-"],
        ["never started", _text(tasks.get("neverStarted"))],
        ["task duration", (f"p50 {_text(durations.get('p50'))} s, p90 {_text(durations.get('p90'))} s, "
                           f"max {_text(durations.get('max'))} s") if durations else "-"],
        ["created / ended", f"{_text(outcome.get('createdAt'))} / {_text(outcome.get('endedAt'))}"],
        ["deadline", _text(outcome.get("deadline"))],
        ["collection", f'<span class="{"ok" if complete else "bad"}">{"complete" if complete else "incomplete"}</span>'
                       f" ({_text(totals.get('nodesCollected'))} of {_text(totals.get('nodes'))} nodes)"
                       + (f"; waiting for {_text(', '.join(collection['waitingFor']))}"
                          if collection.get("waitingFor") else "")],
        ["files", f"{_text(totals.get('files'))} logs, {_text(totals.get('crashDumps'))} crash dumps, "
                  f"{_text(totals.get('bytes'))} bytes, {_text(totals.get('errorLines'))} error lines"],
        ["refused uploads", _text(totals.get("refused")) if totals.get("refused") else "none"],
    ]
    return "<table><tbody>" + "".join(f"<tr><th>{escape(k)}</th><td>{v}</td></tr>" for k, v in rows) + "</tbody></table>"


def _node_problems(node: Mapping[str, Any]) -> str:
    problems = []
    if node.get("manifestError"):
        problems.append(f"manifest: {_text(node['manifestError'])}")
    if node.get("refusedReason"):
        problems.append(f"refused: {_text(node['refusedReason'])}")
    for key, what in (("uploadFailureCount", "files failed to upload"), ("problemCount", "files could not be read"),
                      ("renamedCount", "names stored as safe names"), ("unexpectedBlobCount", "blobs not in its manifest")):
        if node.get(key):
            problems.append(f"{_text(node[key])} {what}")
    return "<br>".join(problems) or "-"


def _status(node: Mapping[str, Any]) -> str:
    status = node.get("status") or ("collected" if node.get("collected") else "waiting")
    return f'<span class="{"ok" if status == "collected" else "bad"}">{escape(str(status))}</span>'


def _nodes(nodes: list[Mapping[str, Any]]) -> str:
    rows = [[
        _code(n.get("nodeId")), _status(n), _exit(n.get("prepExitCode")), _exit(n.get("releaseExitCode")),
        _text(n.get("tasksRun")), _text(n.get("tasksFailed")), _text(n.get("files")), _text(n.get("errorLines")),
        _node_problems(n),
    ] for n in nodes]
    return _table(["node", "collection", "prep exit", "release exit", "tasks", "failed", "files", "error lines",
                   "problems"], rows, numeric=frozenset({4, 5, 6, 7}))


def _failed_tasks(tasks: Mapping[str, Any]) -> str:
    listed = tasks.get("failed") or []
    rows = [[_code(t.get("id")), _code(t.get("nodeId")), _exit(t.get("exitCode")), _text(t.get("retries")),
             "<br>".join(_code(line) for line in t.get("excerpt") or []) or "-"] for t in listed[:MAX_TASK_IDS]]
    total = tasks.get("failedTotal") or len(listed)
    more = f'<p class="muted">{total - min(len(listed), MAX_TASK_IDS)} more failed tasks: tasks.jsonl lists every task.</p>' \
        if total > min(len(listed), MAX_TASK_IDS) else ""
    return _table(["task", "node", "exit", "retries", "first error lines"], rows) + more


def _crash_groups(groups: list[Mapping[str, Any]]) -> str:
    rows = [[_code(str(g.get("fingerprint") or "")[:16]), _text(g.get("count")), _text(g.get("format")),
             _code(g.get("executable")), _text(g.get("signalName") or g.get("exceptionCode")),
             _text(g.get("location")), _text(", ".join(g.get("nodes") or []))]
            for g in groups]
    return _table(["fingerprint", "dumps", "format", "executable", "signal / exception", "where", "nodes"], rows,
                  numeric=frozenset({1}))


def render_report_page(report: Mapping[str, Any]) -> str:
    job_id = _text(report.get("jobId"))
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>Job {job_id}: report</title><style>{_STYLE}</style></head><body>",
        f"<h1>Job <code>{job_id}</code></h1>",
        f'<p class="muted">report generated {_text(report.get("generatedAt"))}</p>',
        _summary(report),
        "<h2>Nodes</h2>",
        _nodes(report.get("nodes") or []) if report.get("nodes") else "<p>No node has reported yet.</p>",
    ]
    tasks = report.get("tasks") or {}
    if tasks.get("failed"):
        parts += ["<h2>Failed tasks</h2>", _failed_tasks(tasks)]
    groups = report.get("crashGroups") or []
    if groups:
        parts += ["<h2>Crash dumps</h2>", _crash_groups(groups)]
    parts += ['<p class="muted">Every file collected is listed in the job\'s index (<code>orchestrator logs '
              f"{job_id}</code>).</p>", "</body></html>"]
    return "\n".join(parts) + "\n"
