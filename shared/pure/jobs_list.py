"""The jobs list (`GET /api/jobs`): the orchestrator's jobs, newest first, paged and filtered by state, as
JSON for scripts and as a page linking each job's report.

Jobs come from two places: Batch (the jobs still there, with their state and creation time) and the
report folders in `job-reports` (every job the orchestrator took, kept after Batch deleted it at the end
of the retention period). Only the page's own jobs are then read in full.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from html import escape
from typing import Any
from urllib.parse import quote, urlencode

from shared.pure.timefmt import seconds_between, show_duration, show_time

DELETED = "deleted"  # from Batch, after the retention period: known from its report only
STATES = ("active", "disabling", "disabled", "enabling", "terminating", "completed", "deleting", DELETED)
DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE = 50, 200
RESERVED_FOLDERS = frozenset({"rejected", "outcomes", "rejected-blobs"})


@dataclass(frozen=True)
class Known:
    job_id: str
    state: str
    created_at: str | None = None  # ISO 8601


class BadQuery(ValueError):
    pass


@dataclass(frozen=True)
class Query:
    state: str | None = None
    page: int = 1
    page_size: int = DEFAULT_PAGE_SIZE


def parse_query(params: Mapping[str, str]) -> Query:
    state = (params.get("state") or "").strip().lower() or None
    if state is not None and state not in STATES:
        raise BadQuery(f"state: must be one of {', '.join(STATES)}")
    try:
        page = int(params.get("page") or 1)
        size = int(params.get("pageSize") or DEFAULT_PAGE_SIZE)
    except ValueError:
        raise BadQuery("page and pageSize: must be whole numbers") from None
    if page < 1:
        raise BadQuery("page: at least 1")
    if not 1 <= size <= MAX_PAGE_SIZE:
        raise BadQuery(f"pageSize: 1 to {MAX_PAGE_SIZE}")
    return Query(state, page, size)


def merge(in_batch: Iterable[Known], folders: Iterable[str]) -> list[Known]:
    """Every job once, newest first: Batch's by creation time, then those only a report folder knows."""
    live = {job.job_id: job for job in in_batch}
    gone = sorted({f for f in folders if f not in live and f not in RESERVED_FOLDERS}, reverse=True)
    ordered = sorted(live.values(), key=lambda j: (j.created_at or "", j.job_id), reverse=True)
    return ordered + [Known(job_id, DELETED) for job_id in gone]


def select(jobs: list[Known], query: Query) -> tuple[list[Known], int]:
    """The query's page, and how many jobs match in all."""
    matching = [j for j in jobs if query.state is None or j.state == query.state]
    first = (query.page - 1) * query.page_size
    return matching[first:first + query.page_size], len(matching)


NOT_CREATED = "not created"  # a saved request Batch has no job for, e.g. waiting for the active-job quota


def entry(job: Known, report: Mapping[str, Any] | None, counts: Mapping[str, int] | None) -> dict[str, Any]:
    """One job as listed: Batch's state, the outcome from its report, its tasks and how long it ran. A
    folder Batch has no job for and with no report was never a job: its request waits (the quota) or failed."""
    outcome = (report or {}).get("outcome") or {}
    tasks = dict(outcome.get("taskCounts") or counts or {})
    created = outcome.get("createdAt") or job.created_at
    state = NOT_CREATED if job.state == DELETED and report is None else job.state
    return {"jobId": job.job_id, "state": state, "createdAt": created, "endedAt": outcome.get("endedAt"),
            "terminateReason": outcome.get("terminateReason"), "taskCounts": tasks or None,
            "durationSeconds": seconds_between(created, outcome.get("endedAt")),
            "collectionComplete": (report or {}).get("collectionComplete"), "report": f"jobs/{job.job_id}"}


def listing(entries: list[dict[str, Any]], total: int, query: Query) -> dict[str, Any]:
    pages = max((total + query.page_size - 1) // query.page_size, 1)
    return {"jobs": entries, "total": total, "page": query.page, "pageSize": query.page_size, "pages": pages,
            "state": query.state}


_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222}h1{font-size:1.4em}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left;vertical-align:top}
td.n{text-align:right}.bad{color:#b00020;font-weight:600}.ok{color:#1b6e20}.muted{color:#777}
nav a{margin-right:.8em}code{font-family:ui-monospace,monospace}
"""


def _link(params: dict[str, Any], auth: Mapping[str, str]) -> str:
    query = {k: v for k, v in {**params, **auth}.items() if v not in (None, "")}
    return "jobs" + (f"?{urlencode(query)}" if query else "")


def _with_auth(url: str, auth: Mapping[str, str]) -> str:
    return url + (f"?{urlencode(dict(auth))}" if auth else "")


def render_jobs_page(body: Mapping[str, Any], auth: Mapping[str, str] | None = None) -> str:
    """auth: the query parameters that authorized this page (`code=`, in Azure), carried into its links."""
    auth = dict(auth or {})
    rows = []
    for job in body["jobs"]:
        counts = job.get("taskCounts") or {}
        reason = job.get("terminateReason")
        rows.append(
            f'<tr><td><a href="{escape(_with_auth(quote(str(job["report"])), auth))}"><code>'
            f'{escape(str(job["jobId"]))}</code></a></td><td>{escape(str(job["state"]))}</td>'
            f'<td class="{"ok" if reason == "AllTasksComplete" else "bad" if reason else ""}">'
            f'{escape(str(reason or "-"))}</td>'
            f'<td class="n">{escape(str(counts.get("succeeded", "-")))}</td>'
            f'<td class="n">{escape(str(counts.get("failed", "-")))}</td>'
            f'<td class="n">{escape(str(counts.get("active", 0) + counts.get("running", 0)) if counts else "-")}</td>'
            f'<td>{escape(show_time(job.get("createdAt")))}</td>'
            f'<td class="n">{escape(show_duration(job.get("durationSeconds")))}</td></tr>')
    state = body.get("state")
    filters = " ".join(
        f'<a href="{escape(_link({"state": s}, auth))}">{escape(s or "all")}</a>' if s != state else
        f"<strong>{escape(s or 'all')}</strong>" for s in (None, "active", "completed", DELETED))
    pager = []
    if body["page"] > 1:
        pager.append(f'<a href="{escape(_link({"state": state, "page": body["page"] - 1}, auth))}">newer</a>')
    if body["page"] < body["pages"]:
        pager.append(f'<a href="{escape(_link({"state": state, "page": body["page"] + 1}, auth))}">older</a>')
    table = ("<table><thead><tr><th>job</th><th>state</th><th>ended because</th><th>succeeded</th><th>failed</th>"
             "<th>waiting or running</th><th>created</th><th>ran for</th></tr></thead><tbody>" + "".join(rows)
             + "</tbody></table>") if rows else "<p>No jobs match.</p>"
    return "\n".join([
        "<!doctype html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="referrer" content="no-referrer">',
        f"<title>Jobs</title><style>{_STYLE}</style></head><body>",
        "<h1>Jobs</h1>",
        f"<nav>state: {filters}</nav>",
        f'<p class="muted">{body["total"]} jobs; page {body["page"]} of {body["pages"]}, newest first. The same as '
        "JSON: add <code>format=json</code>.</p>",
        table,
        f"<nav>{' '.join(pager)}</nav>",
        "</body></html>",
    ]) + "\n"
