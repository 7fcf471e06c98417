"""Job and task routes beyond the basics: disable/enable a job, reactivate and update a task, subtask info,
and applications (the emulator has no application packages)."""

from __future__ import annotations

from aiohttp import web

from local.batch.api import _account, _body, _json, _page
from local.batch.errors import invalid_property, not_found

job_routes = web.RouteTableDef()
DISABLE_OPTIONS = ("requeue", "terminate", "wait")


@job_routes.post("/jobs/{job}/disable")
async def disable_job(request: web.Request) -> web.Response:
    option = (await _body(request)).get("disableTasks")
    if option not in DISABLE_OPTIONS:
        raise invalid_property("disableTasks", option, "must be requeue, terminate or wait")
    _account(request).job_ops.disable_job(request.match_info["job"], option)
    return _json(202)


@job_routes.post("/jobs/{job}/enable")
async def enable_job(request: web.Request) -> web.Response:
    await _body(request)
    _account(request).job_ops.enable_job(request.match_info["job"])
    return _json(202)


@job_routes.post("/jobs/{job}/tasks/{task}/reactivate")
async def reactivate_task(request: web.Request) -> web.Response:
    await _body(request)
    _account(request).task_ops.reactivate_task(request.match_info["job"], request.match_info["task"])
    return _json(204)


@job_routes.put("/jobs/{job}/tasks/{task}")
async def update_task(request: web.Request) -> web.Response:
    account = _account(request)
    task = account.task_ops.update_task(request.match_info["job"], request.match_info["task"], await _body(request))
    return _json(200, headers={"ETag": task.etag,
                               "DataServiceId": f"{account.base_url}/jobs/{task.job_id}/tasks/{task.id}"})


@job_routes.get("/jobs/{job}/tasks/{task}/subtasksinfo")
async def subtasks(request: web.Request) -> web.Response:
    # Only multi-instance tasks have subtasks, and the emulator refuses those when they are added.
    account = _account(request)
    account.get_task(account.get_job(request.match_info["job"]).id, request.match_info["task"])
    return _json(200, {"odata.metadata": f"{account.base_url}/$metadata#subtaskinfo", "value": []})


@job_routes.get("/applications")
async def list_applications(request: web.Request) -> web.Response:
    return _page(request, [], "applications", frozenset())


@job_routes.get("/applications/{application}")
async def get_application(request: web.Request) -> web.Response:
    raise not_found("Application", request.match_info["application"])
