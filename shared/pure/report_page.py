"""The report page: one job's report.json (and the view of its tasks) as a self-contained HTML page (pure:
report in, text out).

Everything shown comes from files the release tasks uploaded and names users chose, so every value is
escaped, and every text from a log is redacted; the page loads nothing from elsewhere and runs no script
(inline style and SVG only), so it works offline and under a strict Content-Security-Policy. Its links
(downloads, each node's files) are relative to the page and carry the query parameters that authorized it
(the function key, `code=`, in Azure), so they open with the same authorization.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from html import escape
from typing import Any
from urllib.parse import quote, urlencode

from shared.node.lognames import TASKS_DIR
from shared.pure import downloads
from shared.pure.redact import redact_secrets
from shared.pure.report import MAX_GROUP_NAMES
from shared.pure.report_explain import explain
from shared.pure.task_view import ENDED_WITH_JOB, TaskView
from shared.pure.timefmt import seconds_between, show_duration, show_time
from shared.pure.timeline_svg import render_timeline

CONTENT_SECURITY_POLICY = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"
# A page for a job of 100,000 tasks must still open: long lists are cut, report.json has them all.
MAX_ROWS = 1000
MAX_TASK_IDS = 200
PREP_DIR, RELEASE_DIR = "jobpreparation", "jobrelease"

_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222}
h1{font-size:1.4em}h2{font-size:1.1em;margin-top:1.6em}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left;vertical-align:top}
td.n{text-align:right}.bad{color:#b00020;font-weight:600}.ok{color:#1b6e20}.muted{color:#777}
code{font-family:ui-monospace,monospace;word-break:break-all}
pre{font-family:ui-monospace,monospace;background:#f6f6f6;padding:.4em;margin:.2em 0;white-space:pre-wrap;
word-break:break-all;max-width:70em}
ul.why li{margin:.3em 0}.timeline{overflow-x:auto}
.legend .swatch{display:inline-block;width:.9em;height:.9em;margin:0 .3em 0 .9em;vertical-align:-.1em}
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


class Links:
    """Download links relative to the report page, carrying its authorization."""

    def __init__(self, job_id: str, auth: Mapping[str, str] | None, base: str = ""):
        """base: from the page to `.../jobs/` (the report page is `.../jobs/{jobId}`, so none)."""
        self.job_id = job_id
        self._base = base
        self._query = f"?{urlencode(dict(auth))}" if auth else ""

    def _a(self, url: str, text: str) -> str:
        return f'<a href="{escape(self._base + url + self._query)}">{_text(text)}</a>'

    def file(self, node_id: str, path: str, text: str | None = None) -> str:
        return self._a(downloads.file_url(self.job_id, node_id, path), text or path)

    def node(self, node_id: str, text: str) -> str:
        return self._a(downloads.node_files_url(self.job_id, node_id), text)

    def dump(self, sha256: str, text: str) -> str:
        return self._a(downloads.dump_url(self.job_id, sha256), text)

    def report(self, text: str) -> str:
        return self._a(quote(self.job_id), text)


def _percentiles(values: Mapping[str, Any] | None) -> str:
    if not values:
        return "-"
    return ", ".join(f"{key} {escape(show_duration(values.get(key)))}" for key in ("p50", "p90", "p99", "max")
                     if values.get(key) is not None) + f" (of {_text(values.get('count'))} tasks)"


def _summary(report: Mapping[str, Any], view: TaskView | None) -> str:
    outcome = report.get("outcome") or {}
    counts = outcome.get("taskCounts") or {}
    totals = report.get("totals") or {}
    tasks = report.get("tasks") or {}
    collection = report.get("collection") or {}
    complete = report.get("collectionComplete")
    ran = seconds_between(outcome.get("createdAt"), outcome.get("endedAt"))
    ok_durations = view.ok_percentiles() if view is not None else None
    rows = [
        ["state", _text(outcome.get("state") or "running (no outcome recorded yet)")],
        ["ended because", _text(outcome.get("terminateReason"))],
        ["tasks", ", ".join(f"{escape(k)} {_text(counts.get(k))}"
                            for k in ("completed", "succeeded", "failed", "running", "active")) if counts else "-"],
        ["never started", _text(view.never_started_total if view is not None else tasks.get("neverStarted"))],
        ["task duration (succeeded)" if ok_durations else "task duration",
         _percentiles(ok_durations or tasks.get("durationSeconds"))],
        ["created", _text(show_time(outcome.get("createdAt")))],
        ["ended", _text(show_time(outcome.get("endedAt"))) + (f" (ran for {escape(show_duration(ran))})"
                                                              if ran is not None else "")],
        ["deadline", _text(show_time(outcome.get("deadline")))],
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


def _run_logs(links: Links, node: Mapping[str, Any], folder: str) -> str:
    node_id = str(node.get("nodeId"))
    if node.get("status") != "collected":
        return ""
    return " " + " ".join(links.file(node_id, f"{TASKS_DIR}/{folder}/{name}.txt", name) for name in ("stdout", "stderr"))


def _nodes(nodes: list[Mapping[str, Any]], links: Links) -> str:
    rows = [[
        (links.node(str(n.get("nodeId")), str(n.get("nodeId"))) if n.get("status") == "collected"
         else _code(n.get("nodeId"))),
        _status(n),
        _exit(n.get("prepExitCode")) + _run_logs(links, n, PREP_DIR),
        _exit(n.get("releaseExitCode")) + _run_logs(links, n, RELEASE_DIR),
        _text(n.get("tasksRun")), _text(n.get("tasksFailed")), _text(n.get("files")), _text(n.get("errorLines")),
        _node_problems(n),
    ] for n in nodes]
    return _table(["node (its files)", "collection", "prep exit", "release exit", "tasks", "failed", "files",
                   "error lines", "problems"], rows, numeric=frozenset({4, 5, 6, 7}))


def _excerpt(lines: list[str]) -> str:
    if not lines:
        return "-"
    return f"<pre>{escape(chr(10).join(redact_secrets(str(line)) for line in lines))}</pre>"


def _frame(trace: Mapping[str, Any] | None) -> str:
    """Where a backtrace says it crashed, and what crashed (the exception, the signal)."""
    if not trace or not trace.get("frame"):
        return "-"
    kind = f' <span class="muted">{_text(redact_secrets(str(trace["kind"])))}</span>' if trace.get("kind") else ""
    return _code(redact_secrets(str(trace["frame"]))) + kind


def _failure(code: Any) -> str:
    if code == ENDED_WITH_JOB:
        return f"{_text(code)} (still running when the job ended)"
    return _text(code)


def _failed_tasks(tasks: Mapping[str, Any], links: Links, collected: set[str]) -> str:
    """collected: the nodes whose bundle was collected (a lost node's logs have no link to offer)."""
    listed = tasks.get("failed") or []
    rows = []
    for t in listed[:MAX_TASK_IDS]:
        node_id, task_id = t.get("nodeId"), str(t.get("id"))
        logs = " ".join(links.file(str(node_id), f"{TASKS_DIR}/{task_id}/{name}.txt", name)
                        for name in ("stdout", "stderr")) if node_id in collected else "-"
        rows.append([_code(task_id), _code(node_id), _exit(t.get("exitCode")), _text(t.get("retries")),
                     _text(show_duration(seconds_between(t.get("start"), t.get("end")))),
                     _text(show_time(t.get("start"))), _failure(t.get("failure")), logs, _frame(t.get("backtrace")),
                     _excerpt(t.get("excerpt"))])
    total = tasks.get("failedTotal") or len(listed)
    shown = min(len(listed), MAX_TASK_IDS)
    more = f'<p class="muted">{total - shown} more failed tasks: tasks.jsonl lists every task.</p>' \
        if total > shown else ""
    return _table(["task", "node", "exit", "retries", "duration", "started", "failure", "logs", "crashed at",
                   "first error lines"], rows, numeric=frozenset({3})) + more


def _unfinished(view: TaskView) -> str:
    parts = []
    if view.running_total:
        rows = [[_code(b.task_id), _code(b.node_id), _text(show_duration(b.end - b.start))] for b in view.running]
        parts += [f"<h2>Still running when the job ended ({view.running_total})</h2>",
                  _table(["task", "node", "ran for"], rows)
                  + _more(view.running_total, len(view.running), "tasks still running")]
    if view.never_started_total:
        ids = ", ".join(_code(i) for i in view.never_started)
        parts += [f"<h2>Never started ({view.never_started_total})</h2>", f"<p>{ids}</p>",
                  _more(view.never_started_total, len(view.never_started), "tasks that never started")]
    return "".join(parts)


def _where(group: Mapping[str, Any], links: Links) -> str:
    """The backtrace's frame (with the log that printed it) over the dump's module+offset."""
    trace = group.get("backtrace") or {}
    location = _code(group.get("location")) if group.get("location") else ""
    if not trace.get("frame"):
        return location or '<span class="muted">not known</span>'
    task, node, log = trace.get("taskId"), trace.get("nodeId"), trace.get("log")
    if task and node and log in ("stdout", "stderr"):
        printed = links.file(str(node), f"{TASKS_DIR}/{task}/{log}.txt", str(log)) + " of "
    else:
        printed = ""
    said = f'<br><span class="muted">printed in {printed}{_code(task)}</span>'
    return _frame(trace) + said + (f"<br>dump: {location}" if location else "")


def _crash_groups(groups: list[Mapping[str, Any]], links: Links) -> str:
    rows = []
    for g in groups:
        dumps = [d for d in g.get("dumps") or [] if downloads.valid_sha256(str(d.get("sha256")))]
        listed = "<br>".join(links.dump(str(d["sha256"]), f"{str(d['sha256'])[:12]}… ({d.get('size')} bytes"
                                        + (f", {d['taskId']}" if d.get("taskId") else "") + ")") for d in dumps)
        rows.append([_code(str(g.get("fingerprint") or "")[:16]), _text(g.get("count")), _text(g.get("format")),
                     _code(g.get("executable")), _text(g.get("signalName") or g.get("exceptionCode")),
                     _where(g, links), _text(", ".join(g.get("nodes") or [])), _text(", ".join(g.get("tasks") or [])),
                     listed or "-"])
    return _table(["fingerprint", "dumps", "format", "executable", "signal / exception", "where it crashed", "nodes",
                   "tasks", "download"], rows, numeric=frozenset({1}))


def log_crash_groups(failed: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The listed failed tasks that printed a backtrace, grouped by where they crashed, dump or not: for a
    crash that left no dump, the logs are the only witness."""
    groups: dict[tuple, dict[str, Any]] = {}
    for task in failed:
        trace = task.get("backtrace") or {}
        if not trace.get("frame"):
            continue
        group = groups.setdefault((trace.get("kind"), trace["frame"]), {**trace, "count": 0, "tasks": []})
        group["count"] += 1
        if len(group["tasks"]) < MAX_GROUP_NAMES:
            group["tasks"].append(str(task.get("id")))
    return sorted(groups.values(), key=lambda g: (-g["count"], str(g["frame"])))


def _log_crashes(tasks: Mapping[str, Any]) -> str:
    groups = log_crash_groups(tasks.get("failed") or [])
    if not groups:
        return ""
    rows = [[_frame(g), _text(g["count"]), ", ".join(_code(t) for t in g["tasks"])] for g in groups]
    listed, total = len(tasks.get("failed") or []), tasks.get("failedTotal") or 0
    scope = (f'<p class="muted">Of the {listed} failed tasks listed ({total} failed in all).</p>'
             if total > listed else "")
    return "<h2>Crashes in task logs</h2>" + scope + _table(["crashed at", "failed tasks", "for example"], rows,
                                                             numeric=frozenset({1}))


def _setup(setup: Mapping[str, Any]) -> str:
    """Who each kind of task ran as, its packages, retention and what it waited for (setup_summary)."""
    prep, release = setup.get("preparation") or {}, setup.get("release") or {}
    rows = [["preparation", "1 per node", _text(prep.get("runsAs")), _text(prep.get("retention")), "",
             _text(("waits for it" if prep.get("waitForSuccess", True) else "tasks do not wait for it")
                   + ("; runs again after a reboot" if prep.get("rerunAfterReboot", True) else ""))],
            ["release", "1 per node", _text(release.get("runsAs")), _text(release.get("retention")), "", ""]]
    for kind in setup.get("kinds") or []:
        rows.append([_text(kind.get("name")), _text(kind.get("tasks")), _text(kind.get("runsAs")),
                     _text(kind.get("retention")), _text(", ".join(kind.get("packages") or [])),
                     _text(("waits for " + ", ".join(kind["waitsFor"])) if kind.get("waitsFor") else "")])
    return _table(["task", "count", "runs as", "files kept", "application packages", "notes"], rows)


def render_report_page(report: Mapping[str, Any], view: TaskView | None = None,
                       auth: Mapping[str, str] | None = None) -> str:
    """view: every task of the job (task_view.build_view over tasks.jsonl), for the timeline and the tasks
    still running or never started; auth: the query parameters that authorized the page."""
    raw_id = str(report.get("jobId") or "")
    job_id = _text(raw_id)
    links = Links(raw_id, auth)
    why = "".join(f'<li class="{cls}">{html}</li>' for cls, html in explain(report, view))
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<meta name="referrer" content="no-referrer">',
        f"<title>Job {job_id}: report</title><style>{_STYLE}</style></head><body>",
        f"<h1>Job <code>{job_id}</code></h1>",
        f'<p class="muted">report generated {_text(show_time(report.get("generatedAt")))}</p>',
        f'<ul class="why">{why}</ul>',
        _summary(report, view),
    ]
    if view is not None and view.total:
        parts += ["<h2>Timeline</h2>", render_timeline(view, report.get("nodes") or [])]
    parts += [
        "<h2>Nodes</h2>",
        _nodes(report.get("nodes") or [], links) if report.get("nodes") else "<p>No node has reported yet.</p>",
    ]
    tasks = report.get("tasks") or {}
    if tasks.get("failed"):
        collected = {str(n.get("nodeId")) for n in report.get("nodes") or [] if n.get("status") == "collected"}
        parts += ["<h2>Failed tasks</h2>", _failed_tasks(tasks, links, collected)]
    if view is not None:
        parts.append(_unfinished(view))
    groups = report.get("crashGroups") or []
    if groups:
        parts += ["<h2>Crash dumps</h2>", _crash_groups(groups, links)]
    parts.append(_log_crashes(tasks))
    if report.get("setup"):
        parts += ["<h2>Setup</h2>", _setup(report["setup"])]
    parts += ['<p class="muted">Every file collected is listed per node (the node links above), and by '
              f"<code>orchestrator logs {job_id}</code>. Times are UTC.</p>", "</body></html>"]
    return "\n".join(parts) + "\n"


def render_node_files(job_id: str, node_id: str, lines: Iterable[Mapping[str, Any]],
                      auth: Mapping[str, str] | None = None, limit: int = MAX_ROWS) -> str:
    """A node's collected files (its index), each a download link."""
    links = Links(job_id, auth, base="../../")  # the listing is `.../jobs/{jobId}/files/{nodeId}`
    rows, total = [], 0
    for line in lines:
        total += 1
        if len(rows) < limit:
            path = str(line.get("path"))
            rows.append([links.file(node_id, path),
                         _text(line.get("original")), _text(line.get("size")), _text(line.get("lines")),
                         _text(line.get("errorLines")), _excerpt((line.get("firstErrors") or [])[:2])])
    table = _table(["file", "original name", "bytes", "lines", "error lines", "first error lines"], rows,
                   numeric=frozenset({2, 3, 4}))
    return "\n".join([
        "<!doctype html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="referrer" content="no-referrer">',
        f"<title>Files of {_text(node_id)}, job {_text(job_id)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>Files of node <code>{_text(node_id)}</code>, job <code>{_text(job_id)}</code></h1>",
        f'<p class="muted">{total} files collected; back to {links.report("the report")}.</p>', table,
        _more(total, len(rows), "files"), "</body></html>",
    ]) + "\n"
