"""HTTP: GET /api/jobs/{jobId} returns the job's report (function key required in Azure)."""

from __future__ import annotations

import json
import re

import azure.functions as func

from shared.request import ID_PATTERN
from shared.services import services

bp = func.Blueprint()


def _json(status: int, body: dict) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(body, indent=2), status_code=status, mimetype="application/json")


@bp.function_name("job_report")
@bp.route(route="jobs/{jobId}", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def job_report(req: func.HttpRequest) -> func.HttpResponse:
    job_id = req.route_params.get("jobId", "")
    if not re.fullmatch(ID_PATTERN, job_id):
        return _json(400, {"error": "jobId: not a valid Batch job id (letters, digits, - and _, at most 64)"})
    store = services().store
    report = store.report(job_id)
    if report is not None:
        return _json(200, report)
    outcome = store.outcome(job_id)
    if outcome is not None:
        return _json(200, {"jobId": job_id, "outcome": outcome, "files": [], "nodes": []})
    return _json(404, {"error": f"no report for job {job_id!r} yet: the job may still be running, or the id "
                                "may be wrong (see `orchestrator status`)"})
