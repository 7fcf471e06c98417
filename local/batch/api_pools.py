"""Pool and account routes beyond create/get/list/delete: resize, stop resize, remove nodes, update, autoscale,
node counts, usage metrics, supported images, and node service logs; and the node features the emulator refuses."""

from __future__ import annotations

import re
import tempfile
import uuid
from datetime import UTC, datetime

from aiohttp import web

from local.batch import transfer
from local.batch.api import _account, _body, _json, _page
from local.batch.errors import BatchError, invalid_property, missing_property
from local.batch.images import SUPPORTED_IMAGES
from local.batch.poolspec import parse_formula, refuse_unsupported
from local.batch.starttask import start_task_spec
from local.batch.wire import fmt_time, name_values

pool_routes = web.RouteTableDef()
# Node states as Get Pool Node Counts names them (https://learn.microsoft.com/rest/api/batchservice/account/list-pool-node-counts).
COUNT_KEYS = {"creating": "creating", "idle": "idle", "offline": "offline", "preempted": "preempted",
              "rebooting": "rebooting", "reimaging": "reimaging", "running": "running", "starting": "starting",
              "starttaskfailed": "startTaskFailed", "leavingpool": "leavingPool", "unknown": "unknown",
              "unusable": "unusable", "waitingforstarttask": "waitingForStartTask", "upgradingos": "upgradingOS"}
PATCHABLE = ("startTask", "metadata", "applicationPackageReferences", "certificateReferences",
             "targetNodeCommunicationMode")


def unsupported(what: str) -> BatchError:
    return BatchError(400, "FeatureNotSupported", f"{what} is not supported by the Batch emulator.")


@pool_routes.post("/pools/{pool}/resize")
async def resize_pool(request: web.Request) -> web.Response:
    _account(request).resizer.resize(request.match_info["pool"], await _body(request))
    return _json(202)


@pool_routes.post("/pools/{pool}/stopresize")
async def stop_resize(request: web.Request) -> web.Response:
    _account(request).resizer.stop_resize(request.match_info["pool"])
    return _json(202)


@pool_routes.post("/pools/{pool}/removenodes")
async def remove_nodes(request: web.Request) -> web.Response:
    _account(request).resizer.remove_nodes(request.match_info["pool"], await _body(request))
    return _json(202)


def _update(request: web.Request, body: dict, replace: bool) -> web.Response:
    account = _account(request)
    pool = account.get_pool(request.match_info["pool"])
    refuse_unsupported(body)
    other = sorted(k for k in body if k not in PATCHABLE)
    if other:
        raise invalid_property(other[0], "", "the emulator updates only " + ", ".join(PATCHABLE) + " on a pool")
    start = start_task_spec(body.get("startTask"))
    if replace or "startTask" in body:
        pool.spec.pop("startTask", None)
        if start is not None:
            pool.spec["startTask"] = start
        # The new start task runs on nodes as they join or reboot, as Batch applies it.
        for node in pool.nodes.values():
            node.start_spec = start
    if replace or "metadata" in body:
        pool.spec["metadata"] = name_values("metadata", body.get("metadata"))
    for key in ("applicationPackageReferences", "targetNodeCommunicationMode"):
        if key in body:
            pool.spec[key] = body[key]
    pool.touch()
    return _json(200, headers={"ETag": pool.etag, "DataServiceId": f"{account.base_url}/pools/{pool.id}"})


@pool_routes.patch("/pools/{pool}")
async def patch_pool(request: web.Request) -> web.Response:
    return _update(request, await _body(request), replace=False)


@pool_routes.post("/pools/{pool}/updateproperties")
async def update_pool_properties(request: web.Request) -> web.Response:
    body = await _body(request)
    for required in ("certificateReferences", "applicationPackageReferences", "metadata"):
        if required not in body:
            raise missing_property(required)
    return _update(request, body, replace=True)


@pool_routes.post("/pools/{pool}/enableautoscale")
async def enable_autoscale(request: web.Request) -> web.Response:
    account = _account(request)
    pool = account.get_pool(request.match_info["pool"])
    body = await _body(request)
    formula = body.get("autoScaleFormula") or pool.spec.get("autoScaleFormula")
    parse_formula(formula)
    if pool.allocation_state != "steady":
        raise BatchError(409, "PoolNotSteady", "The specified pool is not in a steady allocation state.")
    pool.spec.update({"enableAutoScale": True, "autoScaleFormula": formula})
    if body.get("autoScaleEvaluationInterval"):
        pool.spec["autoScaleEvaluationInterval"] = body["autoScaleEvaluationInterval"]
    account.resizer.retarget(pool, formula)
    return _json(200, headers={"ETag": pool.etag})


@pool_routes.post("/pools/{pool}/disableautoscale")
async def disable_autoscale(request: web.Request) -> web.Response:
    pool = _account(request).get_pool(request.match_info["pool"])
    pool.spec["enableAutoScale"] = False
    pool.spec.pop("autoScaleFormula", None)
    pool.touch()
    return _json(200, headers={"ETag": pool.etag})


@pool_routes.post("/pools/{pool}/evaluateautoscale")
async def evaluate_autoscale(request: web.Request) -> web.Response:
    _account(request).get_pool(request.match_info["pool"])
    body = await _body(request)
    targets = parse_formula(body.get("autoScaleFormula"))
    return _json(200, {"timestamp": fmt_time(datetime.now(UTC)),
                       "results": f"$TargetDedicatedNodes={targets['dedicated']};"
                                  f"$TargetLowPriorityNodes={targets['low_priority']};"
                                  f"$NodeDeallocationOption={targets['deallocation']}"})


@pool_routes.get("/nodecounts")
async def node_counts(request: web.Request) -> web.Response:
    items = []
    for i, pool in enumerate(list(_account(request).pools.values()), 1):
        counts = {"dedicated": dict.fromkeys([*COUNT_KEYS.values(), "total"], 0),
                  "lowPriority": dict.fromkeys([*COUNT_KEYS.values(), "total"], 0)}
        for node in pool.nodes.values():
            kind = counts["dedicated" if node.dedicated else "lowPriority"]
            kind[COUNT_KEYS.get(node.state, "unknown")] += 1
            kind["total"] += 1
        items.append((i, {"poolId": pool.id, **counts}))
    return _page(request, items, "poolnodecounts", frozenset({"poolId"}))


def _cores(vm_size: str) -> int:
    """The vCPUs in a size's name (standard_d2s_v3: 2); the emulator has no size catalogue."""
    match = re.search(r"_[a-z]+(\d+)", vm_size.lower())
    return int(match[1]) if match else 1


@pool_routes.get("/poolusagemetrics")
async def pool_usage_metrics(request: web.Request) -> web.Response:
    # Batch aggregates usage per pool over past intervals; the emulator reports one interval per pool, from its
    # creation until now, counting its current nodes.
    end = datetime.now(UTC)
    items = []
    for i, pool in enumerate(list(_account(request).pools.values()), 1):
        vm_size = pool.spec.get("vmSize", "standard_d2s_v3")
        hours = (end - pool.creation_time).total_seconds() / 3600
        items.append((i, {"poolId": pool.id, "startTime": fmt_time(pool.creation_time), "endTime": fmt_time(end),
                          "vmSize": vm_size, "totalCoreHours": round(hours * len(pool.nodes) * _cores(vm_size), 6)}))
    return _page(request, items, "poolusagemetrics", frozenset({"poolId", "startTime", "endTime"}))


@pool_routes.get("/supportedimages")
async def supported_images(request: web.Request) -> web.Response:
    items = list(enumerate(SUPPORTED_IMAGES, 1))
    return _page(request, items, "supportedimages", frozenset({"osType", "verificationType", "nodeAgentSKUId"}))


@pool_routes.post("/pools/{pool}/nodes/{node}/uploadbatchservicelogs")
async def upload_service_logs(request: web.Request) -> web.Response:
    account = _account(request)
    node = account.get_node(request.match_info["pool"], request.match_info["node"])
    body = await _body(request)
    url = body.get("containerUrl")
    if not url:
        raise missing_property("containerUrl")
    if not body.get("startTime"):
        raise missing_property("startTime")
    if body.get("identityReference"):
        raise unsupported("Uploading service logs with a managed identity")
    folder = f"{node.pool_id}/{node.id}/{uuid.uuid4()}"
    with tempfile.TemporaryDirectory() as tmp:
        log = f"{tmp}/batch-agent.log"
        with open(log, "w") as fh:
            fh.write(f"node {node.id} of pool {node.pool_id}: state {node.state}, booted {fmt_time(node.boot_time)}, "
                     f"{node.total_run} tasks run, {node.total_succeeded} succeeded\n")
            for recent in node.recent:
                fh.write(f"{recent['jobId']}/{recent['taskId']}: exit code "
                         f"{recent['executionInfo'].get('exitCode')}\n")
        problems = await transfer.upload_output_files([{
            "filePattern": log, "destination": {"container": {"containerUrl": url, "path": f"{folder}/batch-agent.log"}},
            "uploadOptions": {"uploadCondition": "taskcompletion"}}], transfer.Path(tmp), failed=False)
    if problems:
        raise BatchError(409, "UploadFailed", "; ".join(problems)[:1024])
    return _json(200, {"virtualDirectoryName": folder, "numberOfFilesUploaded": 1})


async def _refuse_users(request: web.Request) -> web.Response:
    raise unsupported("Logging in to a node (node user accounts, SSH and remote desktop)")


async def _refuse_certificates(request: web.Request) -> web.Response:
    raise unsupported("Certificates")


for _path in ("/pools/{pool}/nodes/{node}/users{rest:.*}", "/pools/{pool}/nodes/{node}/remoteloginsettings",
              "/pools/{pool}/nodes/{node}/rdp"):
    pool_routes.route("*", _path)(_refuse_users)
pool_routes.route("*", "/certificates{rest:.*}")(_refuse_certificates)


@pool_routes.route("*", "/jobschedules{rest:.*}")
async def _refuse_job_schedules(request: web.Request) -> web.Response:
    raise unsupported("Job schedules")
