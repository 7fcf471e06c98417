"""Downloads for the HTTP API: one file out of a node's bundle, or one crash dump, found only through the
records of the job the URL names (its node record, its crash record), so a URL cannot reach another job's
blobs. Everything that can fail (the records, the bundle's central directory, the range) is checked before
a Served is returned; its bytes are then read by ranged GETs as the response is sent, a chunk at a time
(a file in a bundle through the bundle's central directory, a dump straight from its blob or its parts), so
a download of any size holds about one fetch window in memory."""

from __future__ import annotations

import json
import posixpath
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from shared.adapters.store import Store
from shared.flows import files
from shared.node import lognames
from shared.pure import blob_layout as layout
from shared.pure import downloads as rules
from shared.pure.redact import redacting_logger

TEXT_SUFFIXES = (".txt", ".log", ".out", ".err", ".json", ".jsonl", ".csv")
log = redacting_logger("orchestrator.downloads")
CHUNK = 256 * 1024  # one body message; the readers below start with windows this size, growing on long reads


@dataclass(frozen=True)
class Served:
    # The body, read as it is iterated; what it opened is closed when it ends or is closed (one never
    # iterated is left to the garbage collector: nothing in it holds a connection).
    chunks: Iterator[bytes]
    size: int  # of the whole file
    span: rules.Span | None  # the part served (206), None for the whole file
    filename: str
    content_type: str

    @property
    def length(self) -> int:
        return self.span.length if self.span else self.size


def _own(blob: str, job_id: str) -> bool:
    """A blob a job's records point to must be under the job's own prefix in job-logs."""
    return blob.startswith(f"{job_id}/") and isinstance(layout.check_name(blob), list)


class Truncated(ValueError):
    """The stored file ended before the length its records give: the response, already started, is cut."""


def read_span(stream: BinaryIO, skip: int, length: int, what: str = "") -> Iterator[bytes]:
    """length bytes of stream after skipping skip (a deflated entry can only be read from its start). Raises
    Truncated mid-body rather than end early: a client must see a short download fail, not pass as whole.
    A failure is logged here, naming what: it comes after the function's invocation has ended as succeeded,
    where only the web server's own log would see it."""
    try:
        while skip > 0:
            chunk = stream.read(min(CHUNK, skip))
            if not chunk:
                raise Truncated(f"the stored file ends {skip + length} bytes early")
            skip -= len(chunk)
        while length > 0:
            chunk = stream.read(min(CHUNK, length))
            if not chunk:
                raise Truncated(f"the stored file ends {length} bytes early")
            length -= len(chunk)
            yield chunk
    except Exception as exc:
        log.error("download.failed", extra={"file": what, "error": f"{type(exc).__name__}: {exc}"})
        raise
    finally:
        stream.close()


def _type(path: str) -> str:
    return "text/plain; charset=utf-8" if path.endswith(TEXT_SUFFIXES) else "application/octet-stream"


def log_file(store: Store, job_id: str, node_id: str, path: str, range_header: str | None) -> Served:
    """One file of a node's bundle. Raises files.NotCollected or rules.Unsatisfiable."""
    record = store.reports.read_json(layout.node_record_name(job_id, node_id)) or {}
    parts = ((record.get("bundle") or {}).get("parts")) or []
    if any(not _own(p.get("blob", ""), job_id) for p in parts):
        raise files.NotCollected(f"node {node_id!r} of job {job_id!r} has no bundle of its own")
    opened = files.open_file(store, job_id, node_id, path)
    try:
        span = rules.byte_range(range_header, opened.size)
    except rules.Unsatisfiable:
        opened.close()
        raise
    chunks = read_span(opened.stream, span.start if span else 0, span.length if span else opened.size,
                       f"{job_id}/{node_id}/{path}")
    return Served(chunks, opened.size, span, posixpath.basename(path), _type(path))


def crash_dump(store: Store, job_id: str, sha256: str, range_header: str | None) -> Served:
    """A crash dump as stored: gzip'd by the release task, or as the failing task uploaded it."""
    record = store.reports.read_json(layout.crash_record_name(job_id, sha256))
    if not record or record.get("jobId") not in (None, job_id):
        raise files.NotCollected(f"no crash dump {sha256[:16]}... in job {job_id!r}")
    for copy in record.get("copies") or []:
        blobs = _copy_parts(store, job_id, copy)
        if blobs:
            break
    else:
        raise files.NotCollected(f"crash dump {sha256[:16]}... of job {job_id!r} is no longer stored")
    size = sum(part_size for _, part_size in blobs)
    span = rules.byte_range(range_header, size)
    reader = store.logs.reader(blobs, files.FETCH_WINDOW, files.MAX_FETCH_WINDOW)
    if span is not None:
        reader.seek(span.start)  # a stored blob reads from anywhere: one ranged GET per window
    chunks = read_span(reader, 0, span.length if span else size, f"{job_id} crash dump {sha256}")
    name = posixpath.basename(copy.get("path") or "crashdump") + (lognames.GZIP_SUFFIX if copy.get("compressed")
                                                                   else "")
    kind = "application/gzip" if copy.get("compressed") else "application/octet-stream"
    return Served(chunks, size, span, name, kind)


def _copy_parts(store: Store, job_id: str, copy: dict) -> list[tuple[str, int]]:
    """The blobs (and sizes) of one stored copy of a dump; [] if it is gone or not the job's own."""
    blob = copy.get("blob") or ""
    if not _own(blob, job_id):
        return []
    node_id = copy.get("nodeId")
    if node_id and rules.valid_node_id(node_id):
        record = store.reports.read_json(layout.node_record_name(job_id, node_id)) or {}
        for dump in record.get("crashDumps") or []:
            if dump.get("blob") == blob and dump.get("parts"):
                parts = [(p["blob"], p["size"]) for p in dump["parts"]]
                return parts if all(_own(name, job_id) for name, _ in parts) else []
    size = store.logs.size(blob)
    return [(blob, size)] if size is not None else []


def node_files(store: Store, job_id: str, node_id: str) -> Iterator[dict]:
    """The node's index lines (path, size, lines, error lines), for the node's file listing."""
    for raw in store.reports.lines(layout.index_name(job_id, node_id)):
        yield json.loads(raw)


FILES_PAGE = 1000  # entries of a node's JSON file listing per page: bounded, however many tasks the node ran


def node_files_page(job_id: str, node_id: str, listed: Iterator[dict], page: str | None) -> dict:
    """One page of a node's files, read from its index without holding the rest (page counts from 1)."""
    try:
        number = max(int(page or 1), 1)
    except ValueError:
        number = 1
    first = (number - 1) * FILES_PAGE
    entries, more = [], False
    for i, entry in enumerate(listed):
        if i >= first + FILES_PAGE:
            more = True
            break
        if i >= first:
            entries.append(entry)
    out = {"jobId": job_id, "nodeId": node_id, "page": number, "files": entries}
    if more:
        out["nextPage"] = number + 1
    return out
