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


def _tasks(tasks: list[Any]) -> str:
    out = []
    for task in tasks[:MAX_TASK_IDS]:
        task = task if isinstance(task, Mapping) else {"id": task}
        code = task.get("exitCode")
        failed = f' <span class="bad">(exit {escape(str(code))})</span>' if code not in (0, None) else ""
        out.append(_text(task.get("id")) + failed)
    extra = f' <span class="muted">and {len(tasks) - MAX_TASK_IDS} more</span>' if len(tasks) > MAX_TASK_IDS else ""
    return (", ".join(out) or "-") + extra


def _summary(report: Mapping[str, Any]) -> str:
    outcome = report.get("outcome") or {}
    counts = outcome.get("taskCounts") or {}
    totals = report.get("totals") or {}
    complete = report.get("collectionComplete")
    rows = [
        ["state", _text(outcome.get("state") or "running (no outcome recorded yet)")],
        ["ended because", _text(outcome.get("terminateReason"))],
        ["tasks", ", ".join(f"{escape(k)} {_text(counts.get(k))}"
                            for k in ("completed", "succeeded", "failed", "running", "active")) if counts else "-"],
        ["created / ended", f"{_text(outcome.get('createdAt'))} / {_text(outcome.get('endedAt'))}"],
        ["deadline", _text(outcome.get("deadline"))],
        ["collection", f'<span class="{"ok" if complete else "bad"}">{"complete" if complete else "incomplete"}</span>'
                       f" ({_text(totals.get('nodesCollected'))} of {_text(totals.get('nodes'))} nodes)"],
        ["files", f"{_text(totals.get('files'))} logs, {_text(totals.get('crashDumps'))} crash dumps, "
                  f"{_text(totals.get('bytes'))} bytes, {_text(totals.get('errorLines'))} error lines"],
    ]
    return "<table><tbody>" + "".join(f"<tr><th>{escape(k)}</th><td>{v}</td></tr>" for k, v in rows) + "</tbody></table>"


def _node_problems(node: Mapping[str, Any]) -> str:
    problems = []
    if node.get("manifestError"):
        problems.append(f"manifest: {_text(node['manifestError'])}")
    if node.get("missing"):
        problems.append("missing: " + ", ".join(_code(p) for p in node["missing"][:20]))
    if node.get("mismatched"):
        problems.append("changed after upload: " + ", ".join(_code(m.get("path")) for m in node["mismatched"][:20]))
    if node.get("uploadFailures"):
        problems.append("upload failed: " + ", ".join(_code(f.get("path")) for f in node["uploadFailures"][:20]))
    return "<br>".join(problems) or "-"


def _nodes(nodes: list[Mapping[str, Any]]) -> str:
    rows = [[
        _code(n.get("nodeId")), _exit(n.get("prepExitCode")), _exit(n.get("releaseExitCode")),
        _tasks(list(n.get("tasks") or [])),
        '<span class="ok">yes</span>' if n.get("collected") else '<span class="bad">no</span>',
        _node_problems(n),
    ] for n in nodes]
    return _table(["node", "prep exit", "release exit", "tasks", "collected", "problems"], rows)


def _files(files: list[Mapping[str, Any]]) -> str:
    rows = [[_code(f.get("nodeId")), _code(f.get("path")), _text(f.get("size")), _text(f.get("lines")),
             f'<span class="bad">{escape(str(f["errorLines"]))}</span>' if f.get("errorLines") else _text(f.get("errorLines"))]
            for f in files]
    return _table(["node", "file", "bytes", "lines", "error lines"], rows, numeric=frozenset({2, 3, 4}))


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
    groups = report.get("crashGroups") or []
    if groups:
        parts += ["<h2>Crash dumps</h2>", _crash_groups(groups)]
    parts += ["<h2>Logs</h2>",
              _files(report.get("files") or []) if report.get("files") else "<p>No log collected yet.</p>",
              "</body></html>"]
    return "\n".join(parts) + "\n"
