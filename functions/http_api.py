"""HTTP: GET /api/jobs/{jobId} returns the job's report (function key required in Azure).

JSON by default; the report page (HTML) for `?format=html` or a browser's `Accept: text/html`.
"""

from __future__ import annotations

import json

import azure.functions as func

from shared.adapters.services import services
from shared.flows.reports import job_report as find_report
from shared.pure.report_page import CONTENT_SECURITY_POLICY, render_report_page
from shared.pure.request import is_batch_id

bp = func.Blueprint()


def _json(status: int, body: dict) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(body, indent=2), status_code=status, mimetype="application/json")


def _wants_html(fmt: str, req: func.HttpRequest) -> bool:
    """An explicit ?format wins; otherwise a browser (Accept: text/html) gets the page."""
    if fmt:
        return fmt == "html"
    return "text/html" in (req.headers.get("accept") or "").lower()


def _page(report: dict) -> func.HttpResponse:
    return func.HttpResponse(render_report_page(report), status_code=200, mimetype="text/html", charset="utf-8",
                             headers={"Content-Security-Policy": CONTENT_SECURITY_POLICY,
                                      "X-Content-Type-Options": "nosniff"})


@bp.function_name("job_report")
@bp.route(route="jobs/{jobId}", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def job_report(req: func.HttpRequest) -> func.HttpResponse:
    job_id = req.route_params.get("jobId", "")
    if not is_batch_id(job_id):
        return _json(400, {"error": "jobId: not a valid Batch job id (letters, digits, - and _, at most 64)"})
    fmt = (req.params.get("format") or "").lower()
    if fmt not in ("", "json", "html"):
        return _json(400, {"error": "format: must be json or html"})
    report = find_report(services().store, job_id)
    if report is not None:
        return _page(report) if _wants_html(fmt, req) else _json(200, report)
    return _json(404, {"error": f"no report for job {job_id!r} yet: the job may still be running, or the id "
                                "may be wrong (see `orchestrator status`)"})
