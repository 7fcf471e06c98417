"""HTTP (function key required in Azure; none locally):

- GET /api/jobs: the jobs list, newest first (`?state=`, `?page=`, `?pageSize=`)
- GET /api/jobs/{jobId}: the job's report
- GET /api/jobs/{jobId}/files/{nodeId}: the node's collected files; `.../files/{nodeId}/{path}`: one of them,
  read out of the node's bundle (`Range` honoured)
- GET /api/jobs/{jobId}/dumps/{sha256}: a crash dump as stored (`Range` honoured)

JSON by default; a page (HTML) for `?format=html` or a browser's `Accept: text/html`. The pages' links
carry the `code` that authorized them, so a download is authorized as its page was.
"""

from __future__ import annotations

import json

import azure.functions as func

from shared.adapters.services import services
from shared.flows import downloads as serve
from shared.flows import files
from shared.flows.reports import job_report as find_report
from shared.flows.reports import jobs_page, task_view
from shared.pure import downloads, jobs_list
from shared.pure.report_page import CONTENT_SECURITY_POLICY, render_node_files, render_report_page
from shared.pure.request import is_batch_id

bp = func.Blueprint()
# A downloaded file is the nodes' content: never run as a page, whatever it holds.
DOWNLOAD_POLICY = "default-src 'none'; sandbox"


def _json(status: int, body: dict) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(body, indent=2), status_code=status, mimetype="application/json")


def _format(req: func.HttpRequest) -> str | None:
    """html or json: an explicit ?format wins; otherwise a browser (Accept: text/html) gets the page."""
    fmt = (req.params.get("format") or "").lower()
    if fmt in ("json", "html"):
        return fmt
    if fmt:
        return None
    return "html" if "text/html" in (req.headers.get("accept") or "").lower() else "json"


def _auth(req: func.HttpRequest) -> dict[str, str]:
    return {"code": req.params["code"]} if req.params.get("code") else {}


def _page(html: str) -> func.HttpResponse:
    return func.HttpResponse(html, status_code=200, mimetype="text/html", charset="utf-8",
                             headers={"Content-Security-Policy": CONTENT_SECURITY_POLICY,
                                      "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"})


_BAD_FORMAT = {"error": "format: must be json or html"}
_BAD_JOB = {"error": "jobId: not a valid Batch job id (letters, digits, - and _, at most 64)"}


@bp.function_name("jobs_list")
@bp.route(route="jobs", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def jobs(req: func.HttpRequest) -> func.HttpResponse:
    fmt = _format(req)
    if fmt is None:
        return _json(400, _BAD_FORMAT)
    try:
        query = jobs_list.parse_query(req.params)
    except jobs_list.BadQuery as exc:
        return _json(400, {"error": str(exc)})
    s = services()
    body = jobs_page(s.store, s.batch, query)
    return _page(jobs_list.render_jobs_page(body, _auth(req))) if fmt == "html" else _json(200, body)


@bp.function_name("job_report")
@bp.route(route="jobs/{jobId}", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def job_report(req: func.HttpRequest) -> func.HttpResponse:
    job_id = req.route_params.get("jobId", "")
    if not is_batch_id(job_id):
        return _json(400, _BAD_JOB)
    fmt = _format(req)
    if fmt is None:
        return _json(400, _BAD_FORMAT)
    store = services().store
    report = find_report(store, job_id)
    if report is None:
        return _json(404, {"error": f"no report for job {job_id!r} yet: the job may still be running, or the id "
                                    "may be wrong (see `orchestrator status`)"})
    if fmt == "json":
        return _json(200, report)
    return _page(render_report_page(report, task_view(store, job_id, report), _auth(req)))


def _download(served: serve.Served) -> func.HttpResponse:
    inline = served.content_type.startswith("text/")
    headers = {"Content-Disposition": downloads.content_disposition(served.filename).replace(
                   "attachment", "inline", 1) if inline else downloads.content_disposition(served.filename),
               "Accept-Ranges": "bytes", "Content-Security-Policy": DOWNLOAD_POLICY,
               "X-Content-Type-Options": "nosniff", "Content-Type": served.content_type}
    if served.span is not None:
        headers["Content-Range"] = f"bytes {served.span.start}-{served.span.end}/{served.size}"
    return func.HttpResponse(served.body, status_code=206 if served.span else 200, headers=headers)


def _refused(exc: Exception) -> func.HttpResponse:
    if isinstance(exc, downloads.Unsatisfiable):
        return func.HttpResponse(b"", status_code=416, headers={"Content-Range": str(exc)})
    if isinstance(exc, serve.TooBig):
        return _json(413, {"error": str(exc)})
    return _json(404, {"error": str(exc)})


@bp.function_name("job_file")
@bp.route(route="jobs/{jobId}/files/{nodeId}/{*path}", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def job_file(req: func.HttpRequest) -> func.HttpResponse:
    """A node's file listing (no path), or one of its files."""
    job_id, node_id = req.route_params.get("jobId", ""), req.route_params.get("nodeId", "")
    path = req.route_params.get("path") or ""
    if not is_batch_id(job_id):
        return _json(400, _BAD_JOB)
    if not downloads.valid_node_id(node_id):
        return _json(400, {"error": "nodeId: letters, digits, - and _, at most 128"})
    store = services().store
    if not path:
        fmt = _format(req)
        if fmt is None:
            return _json(400, _BAD_FORMAT)
        listed = serve.node_files(store, job_id, node_id)
        if fmt == "html":
            return _page(render_node_files(job_id, node_id, listed, _auth(req)))
        return _json(200, serve.node_files_page(job_id, node_id, listed, req.params.get("page")))
    if not downloads.valid_path(path):
        return _json(400, {"error": "path: not a path the collector stores (see the node's file listing)"})
    try:
        return _download(serve.log_file(store, job_id, node_id, path, req.headers.get("range")))
    except (files.NotCollected, downloads.Unsatisfiable, serve.TooBig) as exc:
        return _refused(exc)


@bp.function_name("job_dump")
@bp.route(route="jobs/{jobId}/dumps/{sha256}", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def job_dump(req: func.HttpRequest) -> func.HttpResponse:
    job_id, sha256 = req.route_params.get("jobId", ""), req.route_params.get("sha256", "")
    if not is_batch_id(job_id):
        return _json(400, _BAD_JOB)
    if not downloads.valid_sha256(sha256):
        return _json(400, {"error": "sha256: 64 lower-case hex digits, as the report lists it"})
    try:
        return _download(serve.crash_dump(services().store, job_id, sha256, req.headers.get("range")))
    except (files.NotCollected, downloads.Unsatisfiable, serve.TooBig) as exc:
        return _refused(exc)
