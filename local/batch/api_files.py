"""Node and task files over the Batch REST API: list, read (whole or by ocp-range), properties, delete."""

from __future__ import annotations

import mimetypes
import os
import re
import shutil
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

from aiohttp import web

from local.batch.api import _account, _json, _page
from local.batch.environment import task_rel_dir
from local.batch.errors import BatchError, not_found
from local.batch.model import Job
from local.batch.odata import FILE_FILTER_PROPS
from local.batch.wire import fmt_time, http_date

file_routes = web.RouteTableDef()

def _node_root(request: web.Request) -> tuple[Path, str]:
    account = _account(request)
    node = account.get_node(request.match_info["pool"], request.match_info["node"])
    return node.root, f"{account.base_url}/pools/{node.pool_id}/nodes/{node.id}/files"


@file_routes.get("/pools/{pool}/nodes/{node}/files")
async def list_node_files(request: web.Request) -> web.Response:
    root, url = _node_root(request)
    return _list_files(request, root, url)


@file_routes.get("/pools/{pool}/nodes/{node}/files/{path:.+}")
async def get_node_file(request: web.Request) -> web.StreamResponse:
    root, url = _node_root(request)
    return _file(request, root, request.match_info["path"], url)


@file_routes.delete("/pools/{pool}/nodes/{node}/files/{path:.+}")
async def delete_node_file(request: web.Request) -> web.Response:
    root, _ = _node_root(request)
    return _delete_file(request, root, request.match_info["path"])


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


@file_routes.get("/jobs/{job}/tasks/{task}/files")
async def list_task_files(request: web.Request) -> web.Response:
    root, url = _task_root(request)
    return _list_files(request, root, url)


@file_routes.get("/jobs/{job}/tasks/{task}/files/{path:.+}")
async def get_task_file(request: web.Request) -> web.StreamResponse:
    root, url = _task_root(request)
    return _file(request, root, request.match_info["path"], url)


@file_routes.delete("/jobs/{job}/tasks/{task}/files/{path:.+}")
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
