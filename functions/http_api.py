"""HTTP (function key required in Azure; none locally):

- GET /api/jobs: the jobs list, newest first (`?state=`, `?page=`, `?pageSize=`)
- GET /api/jobs/{jobId}: the job's report
- GET /api/jobs/{jobId}/files/{nodeId}: the node's collected files; `.../files/{nodeId}/{path}`: one of them,
  read out of the node's bundle (`Range` honoured)
- GET /api/jobs/{jobId}/dumps/{sha256}: a crash dump as stored (`Range` honoured)

JSON by default; a page (HTML) for `?format=html` or a browser's `Accept: text/html`. The pages' links
carry the `code` that authorized them, so a download is authorized as its page was.

With HTTP streams (the FastAPI extension; every HTTP function of the app then takes its Request): a download
is sent as it is read from storage, a chunk at a time, so no size is too big for one response and neither
the host nor the worker holds the file. The functions are sync, so the worker runs them in its thread pool;
the body iterators run in AnyIO's worker threads (Starlette's way with a sync iterator: at most 40 at once by
default, so at most that many downloads make progress together), both off the event loop.
"""

from __future__ import annotations

import json

import azure.functions as func
from azurefunctions.extensions.http.fastapi import (
    HTMLResponse,
    Request,
    Response,
    StreamingResponse,
)

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


def _json(status: int, body: dict) -> Response:
    return Response(json.dumps(body, indent=2), status_code=status, media_type="application/json")


def _format(req: Request) -> str | None:
    """html or json: an explicit ?format wins; otherwise a browser (Accept: text/html) gets the page."""
    fmt = (req.query_params.get("format") or "").lower()
    if fmt in ("json", "html"):
        return fmt
    if fmt:
        return None
    return "html" if "text/html" in (req.headers.get("accept") or "").lower() else "json"


def _auth(req: Request) -> dict[str, str]:
    return {"code": req.query_params["code"]} if req.query_params.get("code") else {}


def _page(html: str) -> HTMLResponse:
    return HTMLResponse(html, headers={"Content-Security-Policy": CONTENT_SECURITY_POLICY,
                                       "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"})


_BAD_FORMAT = {"error": "format: must be json or html"}
_BAD_JOB = {"error": "jobId: not a valid Batch job id (letters, digits, - and _, at most 64)"}


@bp.function_name("jobs_list")
@bp.route(route="jobs", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def jobs(req: Request) -> Response:
    fmt = _format(req)
    if fmt is None:
        return _json(400, _BAD_FORMAT)
    try:
        query = jobs_list.parse_query(req.query_params)
    except jobs_list.BadQuery as exc:
        return _json(400, {"error": str(exc)})
    s = services()
    body = jobs_page(s.store, s.batch, query)
    return _page(jobs_list.render_jobs_page(body, _auth(req))) if fmt == "html" else _json(200, body)


@bp.function_name("job_report")
@bp.route(route="jobs/{jobId}", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def job_report(req: Request) -> Response:
    job_id = req.path_params.get("jobId", "")
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


def _download(served: serve.Served) -> StreamingResponse:
    inline = served.content_type.startswith("text/")
    disposition = downloads.content_disposition(served.filename)
    headers = {"Content-Disposition": disposition.replace("attachment", "inline", 1) if inline else disposition,
               "Content-Length": str(served.length), "Accept-Ranges": "bytes",
               "Content-Security-Policy": DOWNLOAD_POLICY, "X-Content-Type-Options": "nosniff"}
    if served.span is not None:
        headers["Content-Range"] = f"bytes {served.span.start}-{served.span.end}/{served.size}"
    return StreamingResponse(served.chunks, status_code=206 if served.span else 200, headers=headers,
                             media_type=served.content_type)


def _refused(exc: Exception) -> Response:
    if isinstance(exc, downloads.Unsatisfiable):
        return Response(b"", status_code=416, headers={"Content-Range": str(exc)})
    return _json(404, {"error": str(exc)})


@bp.function_name("job_file")
@bp.route(route="jobs/{jobId}/files/{nodeId}/{*path}", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def job_file(req: Request) -> Response:
    """A node's file listing (no path), or one of its files."""
    job_id, node_id = req.path_params.get("jobId", ""), req.path_params.get("nodeId", "")
    path = req.path_params.get("path") or ""
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
        return _json(200, serve.node_files_page(job_id, node_id, listed, req.query_params.get("page")))
    if not downloads.valid_path(path):
        return _json(400, {"error": "path: not a path the collector stores (see the node's file listing)"})
    try:
        return _download(serve.log_file(store, job_id, node_id, path, req.headers.get("range")))
    except (files.NotCollected, downloads.Unsatisfiable) as exc:
        return _refused(exc)


@bp.function_name("job_dump")
@bp.route(route="jobs/{jobId}/dumps/{sha256}", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def job_dump(req: Request) -> Response:
    job_id, sha256 = req.path_params.get("jobId", ""), req.path_params.get("sha256", "")
    if not is_batch_id(job_id):
        return _json(400, _BAD_JOB)
    if not downloads.valid_sha256(sha256):
        return _json(400, {"error": "sha256: 64 lower-case hex digits, as the report lists it"})
    try:
        return _download(serve.crash_dump(services().store, job_id, sha256, req.headers.get("range")))
    except (files.NotCollected, downloads.Unsatisfiable) as exc:
        return _refused(exc)
