"""Resource files in (http(s) and blob container SAS URLs) and output files out (to a container SAS URL)."""

from __future__ import annotations

import contextlib
import glob
import os
import xml.etree.ElementTree as ET
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import aiohttp

from local.batch.process import failure


class TransferError(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.info = failure(code, message)


def redact(url: str) -> str:
    """A URL without its query string: SAS tokens never reach logs or error messages."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def _inside(base: Path, rel: str) -> Path:
    target = (base / rel).resolve()
    if not target.is_relative_to(base.resolve()):
        raise TransferError("ResourceFilePathInvalid", f"filePath {rel!r} points outside the task directory")
    return target


async def _download(session: aiohttp.ClientSession, url: str, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        async with session.get(url) as resp:
            if resp.status != 200:
                raise TransferError("ResourceDownloadFailed",
                                    f"Downloading {redact(url)} failed with HTTP {resp.status}")
            with open(target, "wb") as fh:
                async for chunk in resp.content.iter_chunked(1 << 20):
                    fh.write(chunk)
    except aiohttp.ClientError as exc:
        raise TransferError("ResourceDownloadFailed", f"Downloading {redact(url)} failed: {exc}") from exc


async def _list_container(session: aiohttp.ClientSession, container_url: str, prefix: str) -> list[str]:
    parts = urlsplit(container_url)
    names, marker = [], ""
    while True:
        query = "&".join(q for q in (parts.query, "restype=container&comp=list",
                                     f"prefix={quote(prefix)}" if prefix else "",
                                     f"marker={quote(marker)}" if marker else "") if q)
        async with session.get(urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))) as resp:
            if resp.status != 200:
                raise TransferError("ResourceDownloadFailed",
                                    f"Listing {redact(container_url)} failed with HTTP {resp.status}")
            root = ET.fromstring(await resp.read())
        names += [el.text for el in root.iter("Name") if el.text]
        marker = root.findtext("NextMarker") or ""
        if not marker:
            return names


def _blob_url(container_url: str, name: str) -> str:
    parts = urlsplit(container_url)
    path = parts.path.rstrip("/") + "/" + quote(name)
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))


async def download_resource_files(resource_files: list[dict], wd: Path) -> None:
    if not resource_files:
        return
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600)) as session:
        for spec in resource_files:
            rel = spec.get("filePath") or ""
            if spec.get("httpUrl"):
                name = rel or Path(urlsplit(spec["httpUrl"]).path).name
                target = _inside(wd, name)
                await _download(session, spec["httpUrl"], target)
            elif spec.get("storageContainerUrl"):
                container = spec["storageContainerUrl"]
                for blob in await _list_container(session, container, spec.get("blobPrefix") or ""):
                    target = _inside(wd, os.path.join(rel, blob))
                    await _download(session, _blob_url(container, blob), target)
            else:
                raise TransferError("ResourceFileSourceNotSupported",
                                    "The emulator supports resource files with httpUrl or storageContainerUrl only")
            if spec.get("fileMode") and rel:
                with contextlib.suppress(ValueError, OSError):
                    os.chmod(_inside(wd, rel), int(spec["fileMode"], 8))


def _anchor(pattern: str) -> str:
    """The directory before the first wildcard: blob names under a wildcard keep the path below it."""
    fixed = []
    for part in pattern.split("/"):
        if any(ch in part for ch in "*?["):
            break
        fixed.append(part)
    return os.path.normpath("/".join(fixed) or "/")


def _condition_met(condition: str, failed: bool) -> bool:
    condition = (condition or "tasksuccess").lower()
    return condition == "taskcompletion" or (condition == "taskfailure") == failed


def readable_by(path: str, reader: tuple[int, int] | None) -> bool:
    """Whether the task's account may read the file (the emulator uploads as root, Batch as the task's user):
    a link to /etc/shadow in the working directory is not uploaded."""
    if reader is None or reader[0] == 0:
        return True
    st = os.stat(path)
    if st.st_uid == reader[0]:
        return bool(st.st_mode & 0o400)
    return bool(st.st_mode & (0o040 if st.st_gid == reader[1] else 0o004))


async def upload_output_files(output_files: list[dict], wd: Path, failed: bool,
                              reader: tuple[int, int] | None = None) -> list[str]:
    """Upload what the task's outputFiles ask for; return problems as text (a failure never hides the task's).
    reader: the (uid, gid) the task ran as, whose read permission each file needs."""
    problems: list[str] = []
    if not output_files:
        return problems
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600)) as session:
        for spec in output_files:
            if not _condition_met((spec.get("uploadOptions") or {}).get("uploadCondition"), failed):
                continue
            container = ((spec.get("destination") or {}).get("container") or {})
            url = container.get("containerUrl")
            if not url:
                problems.append("outputFiles entry without destination.container.containerUrl")
                continue
            pattern = spec.get("filePattern") or ""
            full = pattern if os.path.isabs(pattern) else str(wd / pattern)
            matches = sorted(p for p in glob.glob(full, recursive=True) if os.path.isfile(p) and readable_by(p, reader))
            wildcard = any(ch in pattern for ch in "*?[")
            anchor = _anchor(full)
            for path in matches:
                dest = (container.get("path") or "").strip("/")
                if wildcard or not dest:
                    rel = os.path.relpath(path, anchor) if wildcard else os.path.basename(path)
                    name = f"{dest}/{rel}" if dest else rel
                else:
                    name = dest
                headers = {"x-ms-blob-type": "BlockBlob", "Content-Type": "application/octet-stream"}
                for header in container.get("uploadHeaders") or []:
                    headers[header["name"]] = header.get("value", "")
                # Put Blob needs a length: without it aiohttp sends chunked, which Blob storage does not take.
                headers["Content-Length"] = str(os.path.getsize(path))
                try:
                    with open(path, "rb") as fh:
                        async with session.put(_blob_url(url, name), data=fh, headers=headers) as resp:
                            if resp.status >= 300:
                                problems.append(f"upload of {name} to {redact(url)} failed with HTTP {resp.status}")
                except (OSError, aiohttp.ClientError) as exc:
                    problems.append(f"upload of {name} to {redact(url)} failed: {exc}")
    return problems
