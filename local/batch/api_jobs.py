"""Task routes (add, add collection, list, get, update, terminate, reactivate, delete, subtask info), job
disable/enable, and the account's applications (local/batch/applications.py)."""

from __future__ import annotations

import asyncio

from aiohttp import web

from local.batch.api import COLLECTION_BODY_LIMIT, _account, _after, _body, _created, _entity, _json, _page
from local.batch.config import MAX_TASKS_PER_COLLECTION
from local.batch.errors import BatchError, invalid_property
from local.batch.ids import fold
from local.batch.odata import TASK_FILTER_PROPS, apply_select

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
    apps = _account(request).state.packages.apps
    found = await asyncio.to_thread(apps.all)
    ordered = sorted(found.values(), key=lambda app: fold(app["id"]))
    return _page(request, [(i, apps.wire(app)) for i, app in enumerate(ordered, 1)], "applications", frozenset())


@job_routes.get("/applications/{application}")
async def get_application(request: web.Request) -> web.Response:
    account = _account(request)
    apps = account.state.packages.apps
    app = await asyncio.to_thread(apps.get, request.match_info["application"])
    return _entity(account, "applications", apps.wire(app))


# ----- tasks ---------------------------------------------------------------------------------------

@job_routes.post("/jobs/{job}/tasks")
async def create_task(request: web.Request) -> web.Response:
    account = _account(request)
    job_id = request.match_info["job"]
    task = account.add_task(job_id, await _body(request))
    return _created(f"{account.base_url}/jobs/{job_id}/tasks/{task.id}", task.etag)


@job_routes.post("/jobs/{job}/addtaskcollection")
async def add_task_collection(request: web.Request) -> web.Response:
    body = await _body(request, limit=COLLECTION_BODY_LIMIT)
    value = body.get("value")
    if not isinstance(value, list):
        raise BatchError(400, "MissingRequiredProperty", "A required property was not specified in the request body.",
                         PropertyName="value")
    if len(value) > MAX_TASKS_PER_COLLECTION:
        raise BatchError(413, "RequestBodyTooLarge",
                         f"The collection holds {len(value)} tasks; at most {MAX_TASKS_PER_COLLECTION} are allowed.")
    results = _account(request).add_tasks(request.match_info["job"], value)
    return _json(200, {"value": results})


@job_routes.get("/jobs/{job}/tasks")
async def list_tasks(request: web.Request) -> web.Response:
    account = _account(request)
    job = account.get_job(request.match_info["job"])
    tasks = sorted(job.tasks.values(), key=lambda t: t.seq)
    return _page(request, lambda after: ((t.seq, account.task_wire(job, t)) for t in _after(tasks, after)), "tasks",
                 TASK_FILTER_PROPS)


@job_routes.get("/jobs/{job}/tasks/{task}")
async def get_task(request: web.Request) -> web.Response:
    account = _account(request)
    job = account.get_job(request.match_info["job"])
    task = account.get_task(job.id, request.match_info["task"])
    return _entity(account, "tasks", apply_select(account.task_wire(job, task), request.query.get("$select")))


@job_routes.delete("/jobs/{job}/tasks/{task}")
async def delete_task(request: web.Request) -> web.Response:
    _account(request).delete_task(request.match_info["job"], request.match_info["task"])
    return _json(200)


@job_routes.post("/jobs/{job}/tasks/{task}/terminate")
async def terminate_task(request: web.Request) -> web.Response:
    await _body(request)
    _account(request).terminate_task(request.match_info["job"], request.match_info["task"])
    return _json(204)
