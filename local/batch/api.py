"""HTTP routes of the Batch REST API served by the emulator."""

from __future__ import annotations

import bisect
import json
from collections.abc import Callable, Iterable
from datetime import datetime
from urllib.parse import quote, urlencode

from aiohttp import web

from local.batch.account import Account
from local.batch.config import PAGE_SIZE_DEFAULT
from local.batch.errors import BatchError, invalid_property, invalid_query
from local.batch.odata import (
    JOB_FILTER_PROPS,
    NODE_FILTER_PROPS,
    POOL_FILTER_PROPS,
    PREP_FILTER_PROPS,
    apply_select,
    parse_filter,
)
from local.batch.versions import upgrade_body
from local.batch.wire import http_date

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
