"""Reading what was collected: a job's file index, and one file out of a node's bundle by ranged reads
(the bundle's central directory, then that file's bytes), without downloading the bundle."""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from shared.adapters.blobs import BlobContainer, BlobReader
from shared.adapters.store import Store
from shared.node import lognames
from shared.pure import blob_layout as layout
from shared.pure.node_record import COLLECTED

# Small windows first: a single file's read should cost about its own size, not a bundle's. A long read
# grows them to MAX_FETCH_WINDOW: the SDK holds about 10 times a GET's size while reading it (measured with
# tracemalloc), so 2 MiB GETs keep a download near 22 MB of memory and read 40 MB in 23 GETs, several
# times faster than 256 KiB ones (bench/bench_download.py).
FETCH_WINDOW = 256 * 1024
MAX_FETCH_WINDOW = 2 * 1024 * 1024


class NotCollected(LookupError):
    """The file, node or job is not in what was collected (yet)."""


@dataclass(frozen=True)
class IndexedFile:
    node_id: str
    path: str
    size: int
    lines: int
    error_lines: int
    sha256: str
    original: str | None = None


def collected_nodes(store: Store, job_id: str) -> list[str]:
    report = store.report(job_id)
    if report is None:
        raise NotCollected(f"no report for job {job_id!r} yet: its nodes upload when the job ends")
    return [row["nodeId"] for row in report.get("nodes") or [] if row.get("status") == COLLECTED]


def index(store: Store, job_id: str, node_id: str | None = None) -> Iterator[IndexedFile]:
    """Every collected file of the job (or of one node), streamed from the per-node index."""
    nodes = [node_id] if node_id else collected_nodes(store, job_id)
    for node in nodes:
        for raw in store.reports.lines(layout.index_name(job_id, node)):
            line = json.loads(raw)
            yield IndexedFile(node, line["path"], line["size"], line["lines"], line["errorLines"], line["sha256"],
                              line.get("original"))


@dataclass
class OpenedFile:
    node_id: str
    path: str
    size: int
    stream: BinaryIO
    reader: BlobReader  # .requests: the ranged GETs it took
    bundle_size: int

    def close(self) -> None:
        self.stream.close()


def open_file(store: Store, job_id: str, node_id: str, path: str) -> OpenedFile:
    """One file of a node's bundle, as a stream. Raises NotCollected naming what is missing."""
    record = store.reports.read_json(layout.node_record_name(job_id, node_id))
    if not record or record.get("status") != COLLECTED or not record.get("bundle"):
        raise NotCollected(f"node {node_id!r} of job {job_id!r} has no collected bundle")
    bundle = record["bundle"]
    logs: BlobContainer = store.logs
    reader = logs.reader([(p["blob"], p["size"]) for p in bundle["parts"]], FETCH_WINDOW, MAX_FETCH_WINDOW)
    archive = zipfile.ZipFile(reader)
    # Index paths are the safe names; an entry stored under another name maps to its safe one.
    info = next((i for i in archive.infolist() if i.filename == path), None) or next(
        (i for i in archive.infolist() if lognames.safe_path(i.filename)[0] == path), None)
    if info is None:
        archive.close()
        raise NotCollected(f"{path!r} is not in node {node_id!r}'s bundle")
    return OpenedFile(node_id, path, info.file_size, archive.open(info), reader, bundle["size"])


def find(store: Store, job_id: str, path: str, node_id: str | None = None) -> list[IndexedFile]:
    """Where a path is in the index (one node, or every collected node)."""
    return [f for f in index(store, job_id, node_id) if f.path == path]
