"""HTTP routes of the Batch REST API served by the emulator."""

from __future__ import annotations

import bisect
import json
import mimetypes
import os
import re
import shutil
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote, urlencode

from aiohttp import web

from local.batch.account import Account
from local.batch.config import MAX_TASKS_PER_COLLECTION, PAGE_SIZE_DEFAULT
from local.batch.environment import task_rel_dir
from local.batch.errors import BatchError, invalid_property, invalid_query, not_found
from local.batch.model import Job
from local.batch.odata import (
    FILE_FILTER_PROPS,
    JOB_FILTER_PROPS,
    NODE_FILTER_PROPS,
    POOL_FILTER_PROPS,
    PREP_FILTER_PROPS,
    TASK_FILTER_PROPS,
    apply_select,
    parse_filter,
)
from local.batch.versions import upgrade_body
from local.batch.wire import fmt_time, http_date

COLLECTION_BODY_LIMIT = 1024 * 1024
ACCOUNT = web.AppKey("account", Account)
routes = web.RouteTableDef()


def _account(request: web.Request) -> Account:
    return request.app[ACCOUNT]


def _json(status: int, body: dict | None = None, headers: dict | None = None) -> web.Response:
    if body is None:
        return web.Response(status=status, headers=headers)
    return web.Response(status=status, body=json.dumps(body).encode(), headers=headers,
                        content_type="application/json", charset="utf-8")


def _entity(account: Account, kind: str, body: dict) -> web.Response:
    body = {"odata.metadata": f"{account.base_url}/$metadata#{kind}/@Element", **body}
    headers = {"ETag": body.get("eTag", ""), "DataServiceVersion": "3.0"}
    if body.get("lastModified"):
        stamp = datetime.fromisoformat(body["lastModified"].replace("Z", "+00:00"))
        headers["Last-Modified"] = http_date(stamp)
    return _json(200, body, headers)


def _created(url: str, etag: str = "", status: int = 201) -> web.Response:
    return _json(status, headers={"Location": url, "DataServiceId": url, "ETag": etag, "DataServiceVersion": "3.0"})


async def _body(request: web.Request, limit: int | None = None) -> dict:
    raw = await request.read()
    if limit is not None and len(raw) > limit:
        raise BatchError(413, "RequestBodyTooLarge", "The request body is too large and exceeds the maximum "
                         f"permissible limit of {limit} bytes.")
    if not raw:
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BatchError(400, "InvalidRequestBody", f"The request body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise BatchError(400, "InvalidRequestBody", "The request body must be a JSON object.")
    return upgrade_body(request.query.get("api-version"), body)


def _page(request: web.Request, items: Iterable[tuple[int, dict]] | Callable[[int], Iterable[tuple[int, dict]]],
          kind: str, allowed: frozenset[str]) -> web.Response:
    """One page of a list, with an odata.nextLink that carries $filter and $select along.

    items: (seq, wire) in seq order, or a function giving those after a seq (so a page far into a long list
    builds the wire form of its own items only, not of every item before it)."""
    q = request.query
    try:
        size = int(q.get("maxresults", PAGE_SIZE_DEFAULT))
    except ValueError as exc:
        raise invalid_query("maxresults", q.get("maxresults"), "must be a whole number") from exc
    if not 1 <= size <= 1000:
        raise invalid_query("maxresults", size, "must be between 1 and 1000")
    try:
        after = int(q.get("$skiptoken", "0"))
    except ValueError as exc:
        raise invalid_query("$skiptoken", q.get("$skiptoken"), "is not a token this server issued") from exc
    predicate = parse_filter(q.get("$filter"), allowed)
    select = q.get("$select")
    page: list[dict] = []
    next_link = None
    last = after
    for seq, wire in items(after) if callable(items) else items:
        if seq <= after or (predicate and not predicate(wire)):
            continue
        if len(page) == size:
            params = {k: v for k, v in q.items() if k != "$skiptoken"}
            params["$skiptoken"] = str(last)
            next_link = f"{_account(request).base_url}{request.path}?{urlencode(params, quote_via=quote)}"
            break
        page.append(apply_select(wire, select))
        last = seq
    body = {"odata.metadata": f"{_account(request).base_url}/$metadata#{kind}", "value": page}
    if next_link:
        body["odata.nextLink"] = next_link
    return _json(200, body)


def _after(ordered: list, seq: int) -> Iterable:
    """The items of a seq-ordered list after seq."""
    start = bisect.bisect_right(ordered, seq, key=lambda item: item.seq)
    return (ordered[i] for i in range(start, len(ordered)))


# ----- pools and nodes -----------------------------------------------------------------------------

@routes.post("/pools")
async def create_pool(request: web.Request) -> web.Response:
    account = _account(request)
    pool = account.create_pool(await _body(request))
    return _created(f"{account.base_url}/pools/{pool.id}", pool.etag)


@routes.get("/pools")
async def list_pools(request: web.Request) -> web.Response:
    account = _account(request)
    items = ((i, p.wire(account.base_url)) for i, p in enumerate(list(account.pools.values()), 1))
    return _page(request, items, "pools", POOL_FILTER_PROPS)


@routes.get("/pools/{pool}")
async def get_pool(request: web.Request) -> web.Response:
    account = _account(request)
    pool = account.get_pool(request.match_info["pool"])
    return _entity(account, "pools", apply_select(pool.wire(account.base_url), request.query.get("$select")))


@routes.delete("/pools/{pool}")
async def delete_pool(request: web.Request) -> web.Response:
    _account(request).delete_pool(request.match_info["pool"])
    return _json(202)


@routes.get("/pools/{pool}/nodes")
async def list_nodes(request: web.Request) -> web.Response:
    account = _account(request)
    pool = account.get_pool(request.match_info["pool"])
    items = ((i, n.wire(account.base_url)) for i, n in enumerate(list(pool.nodes.values()), 1))
    return _page(request, items, "nodes", NODE_FILTER_PROPS)


@routes.get("/pools/{pool}/nodes/{node}")
async def get_node(request: web.Request) -> web.Response:
    account = _account(request)
    node = account.get_node(request.match_info["pool"], request.match_info["node"])
    return _entity(account, "nodes", apply_select(node.wire(account.base_url), request.query.get("$select")))


@routes.post("/pools/{pool}/nodes/{node}/reboot")
async def reboot_node(request: web.Request) -> web.Response:
    option = (await _body(request)).get("nodeRebootOption") or "requeue"
    if option not in ("requeue", "terminate", "taskcompletion", "retaineddata"):
        raise invalid_property("nodeRebootOption", option, "must be requeue, terminate, taskcompletion or retaineddata")
    _account(request).reboot_node(request.match_info["pool"], request.match_info["node"], option)
    return _json(202)


def _node_root(request: web.Request) -> tuple[Path, str]:
    account = _account(request)
    node = account.get_node(request.match_info["pool"], request.match_info["node"])
    return node.root, f"{account.base_url}/pools/{node.pool_id}/nodes/{node.id}/files"


@routes.get("/pools/{pool}/nodes/{node}/files")
async def list_node_files(request: web.Request) -> web.Response:
    root, url = _node_root(request)
    return _list_files(request, root, url)


@routes.get("/pools/{pool}/nodes/{node}/files/{path:.+}")
async def get_node_file(request: web.Request) -> web.StreamResponse:
    root, url = _node_root(request)
    return _file(request, root, request.match_info["path"], url)


@routes.delete("/pools/{pool}/nodes/{node}/files/{path:.+}")
async def delete_node_file(request: web.Request) -> web.Response:
    root, _ = _node_root(request)
    return _delete_file(request, root, request.match_info["path"])


# ----- jobs ----------------------------------------------------------------------------------------

@routes.post("/jobs")
async def create_job(request: web.Request) -> web.Response:
    account = _account(request)
    job = account.create_job(await _body(request))
    return _created(f"{account.base_url}/jobs/{job.id}", job.etag)


@routes.get("/jobs")
async def list_jobs(request: web.Request) -> web.Response:
    account = _account(request)
    jobs = sorted(account.jobs.values(), key=lambda j: j.seq)
    return _page(request, lambda after: ((j.seq, j.wire(account.base_url)) for j in _after(jobs, after)), "jobs",
                 JOB_FILTER_PROPS)


@routes.get("/jobs/{job}")
async def get_job(request: web.Request) -> web.Response:
    account = _account(request)
    job = account.get_job(request.match_info["job"])
    return _entity(account, "jobs", apply_select(job.wire(account.base_url), request.query.get("$select")))


@routes.patch("/jobs/{job}")
async def patch_job(request: web.Request) -> web.Response:
    account = _account(request)
    job = account.update_job(request.match_info["job"], await _body(request), replace=False)
    return _json(200, headers={"ETag": job.etag, "DataServiceId": f"{account.base_url}/jobs/{job.id}"})


@routes.put("/jobs/{job}")
async def put_job(request: web.Request) -> web.Response:
    account = _account(request)
    job = account.update_job(request.match_info["job"], await _body(request), replace=True)
    return _json(200, headers={"ETag": job.etag, "DataServiceId": f"{account.base_url}/jobs/{job.id}"})


@routes.delete("/jobs/{job}")
async def delete_job(request: web.Request) -> web.Response:
    _account(request).delete_job(request.match_info["job"])
    return _json(202)


@routes.post("/jobs/{job}/terminate")
async def terminate_job(request: web.Request) -> web.Response:
    body = await _body(request)
    reason = body.get("terminateReason")
    if reason is not None and not isinstance(reason, str):
        raise invalid_property("terminateReason", reason, "expected a string")
    _account(request).terminate_job(request.match_info["job"], reason)
    return _json(202)


@routes.get("/jobs/{job}/taskcounts")
async def task_counts(request: web.Request) -> web.Response:
    job = _account(request).get_job(request.match_info["job"])
    return _json(200, {"taskCounts": dict(job.counts), "taskSlotCounts": dict(job.slot_counts)})


@routes.get("/jobs/{job}/jobpreparationandreleasetaskstatus")
async def prep_release_status(request: web.Request) -> web.Response:
    account = _account(request)
    items = account.prep_release_status(account.get_job(request.match_info["job"]))
    return _page(request, enumerate(items, 1), "jobpreparationandreleasetaskstatus-list", PREP_FILTER_PROPS)


# ----- tasks ---------------------------------------------------------------------------------------

@routes.post("/jobs/{job}/tasks")
async def create_task(request: web.Request) -> web.Response:
    account = _account(request)
    job_id = request.match_info["job"]
    task = account.add_task(job_id, await _body(request))
    return _created(f"{account.base_url}/jobs/{job_id}/tasks/{task.id}", task.etag)


@routes.post("/jobs/{job}/addtaskcollection")
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


@routes.get("/jobs/{job}/tasks")
async def list_tasks(request: web.Request) -> web.Response:
    account = _account(request)
    job = account.get_job(request.match_info["job"])
    tasks = sorted(job.tasks.values(), key=lambda t: t.seq)
    return _page(request, lambda after: ((t.seq, account.task_wire(job, t)) for t in _after(tasks, after)), "tasks",
                 TASK_FILTER_PROPS)


@routes.get("/jobs/{job}/tasks/{task}")
async def get_task(request: web.Request) -> web.Response:
    account = _account(request)
    job = account.get_job(request.match_info["job"])
    task = account.get_task(job.id, request.match_info["task"])
    return _entity(account, "tasks", apply_select(account.task_wire(job, task), request.query.get("$select")))


@routes.delete("/jobs/{job}/tasks/{task}")
async def delete_task(request: web.Request) -> web.Response:
    _account(request).delete_task(request.match_info["job"], request.match_info["task"])
    return _json(200)


@routes.post("/jobs/{job}/tasks/{task}/terminate")
async def terminate_task(request: web.Request) -> web.Response:
    await _body(request)
    _account(request).terminate_task(request.match_info["job"], request.match_info["task"])
    return _json(204)


def _task_root(request: web.Request) -> tuple[Path, str]:
    account = _account(request)
    job: Job = account.get_job(request.match_info["job"])
    task = account.get_task(job.id, request.match_info["task"])
    node = account.node_of(job, task.node_id)
    if node is None:
        raise BatchError(409, "TaskNotStarted" if task.state == "active" else "NodeNotFound",
                         "The task has not been placed on a node, so it has no files yet.")
    return (node.root / task_rel_dir(job.id, task.id),
            f"{account.base_url}/jobs/{job.id}/tasks/{task.id}/files")


@routes.get("/jobs/{job}/tasks/{task}/files")
async def list_task_files(request: web.Request) -> web.Response:
    root, url = _task_root(request)
    return _list_files(request, root, url)


@routes.get("/jobs/{job}/tasks/{task}/files/{path:.+}")
async def get_task_file(request: web.Request) -> web.StreamResponse:
    root, url = _task_root(request)
    return _file(request, root, request.match_info["path"], url)


@routes.delete("/jobs/{job}/tasks/{task}/files/{path:.+}")
async def delete_task_file(request: web.Request) -> web.Response:
    root, _ = _task_root(request)
    return _delete_file(request, root, request.match_info["path"])


# ----- files ---------------------------------------------------------------------------------------

def _resolve(root: Path, rel: str) -> Path:
    """A path under root; anything that escapes it is reported as not found."""
    target = (root / rel).resolve()
    if not target.is_relative_to(root.resolve()) or not target.exists():
        raise not_found("File", rel)
    return target


def _file_entry(path: Path, name: str, url: str) -> dict:
    st = path.stat()
    is_dir = path.is_dir()
    props = {"creationTime": fmt_time(_mtime(st)), "lastModified": fmt_time(_mtime(st)),
             "contentLength": 0 if is_dir else st.st_size,
             "contentType": "application/octet-stream" if is_dir else
             (mimetypes.guess_type(name)[0] or "application/octet-stream"),
             "fileMode": oct(st.st_mode & 0o7777 | (0o40000 if is_dir else 0o100000))[2:]}
    return {"name": name, "url": f"{url}/{quote(name)}", "isDirectory": is_dir, "properties": props}


def _mtime(st: os.stat_result) -> datetime:
    return datetime.fromtimestamp(st.st_mtime, UTC)


def _walk(root: Path, recursive: bool) -> Iterable[Path]:
    if not root.exists():
        return
    if not recursive:
        yield from sorted(root.iterdir())
        return
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            yield Path(dirpath) / name


def _list_files(request: web.Request, root: Path, url: str) -> web.Response:
    recursive = request.query.get("recursive", "false").lower() == "true"
    entries = (_file_entry(p, p.relative_to(root).as_posix(), url) for p in _walk(root, recursive))
    return _page(request, enumerate(entries, 1), "files", FILE_FILTER_PROPS)


def _file(request: web.Request, root: Path, rel: str, url: str) -> web.StreamResponse:
    path = _resolve(root, rel)
    entry = _file_entry(path, rel, url)
    props = entry["properties"]
    headers = {
        "ocp-creation-time": http_date(_mtime(path.stat())),
        "ocp-batch-file-isdirectory": str(entry["isDirectory"]).lower(),
        "ocp-batch-file-url": entry["url"],
        "ocp-batch-file-mode": props["fileMode"],
        "Last-Modified": http_date(_mtime(path.stat())),
    }
    if entry["isDirectory"]:
        headers["Content-Length"] = "0"
        return web.Response(status=200, headers=headers)
    wanted = request.headers.get("ocp-range")
    if wanted:
        # Batch's own range header: `bytes=start-end`, both inclusive, answered with 200 and those bytes.
        match = re.fullmatch(r"bytes=(\d+)-(\d*)", wanted.strip())
        if match is None:
            raise BatchError(400, "InvalidHeaderValue", "The value for one of the HTTP headers is not in the "
                             "correct format.", HeaderName="ocp-range", HeaderValue=wanted[:100])
        size = props["contentLength"]
        start, end = int(match[1]), min(int(match[2]) if match[2] else size - 1, size - 1)
        with open(path, "rb") as f:
            f.seek(start)
            body = f.read(max(end - start + 1, 0))
        return web.Response(status=200, body=body, headers={**headers, "Content-Type": "application/octet-stream"})
    return web.FileResponse(path, headers={**headers, "Content-Type": "application/octet-stream"})


def _delete_file(request: web.Request, root: Path, rel: str) -> web.Response:
    path = _resolve(root, rel)
    if path.is_dir():
        if request.query.get("recursive", "false").lower() != "true" and any(path.iterdir()):
            raise BatchError(409, "DirectoryNotEmpty", "The directory is not empty; pass recursive=true.")
        shutil.rmtree(path)
    else:
        path.unlink()
    return _json(200)

