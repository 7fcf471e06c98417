"""The rules of a download through the HTTP API: which names a URL may carry, byte ranges, and headers.

A download URL names a job, then a node and a path inside that node's bundle, or a crash dump's sha256.
Each is checked against its own rule here, and the flow then looks the file up only through that job's
records, so no URL can reach another job's blobs (no `..`, no other prefix).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote

from shared.node import lognames

_NODE_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


def valid_node_id(node_id: str) -> bool:
    return bool(_NODE_ID.fullmatch(node_id or ""))


def valid_sha256(value: str) -> bool:
    return bool(_SHA256.fullmatch(value or ""))


def valid_path(path: str) -> bool:
    """A path as the index lists it: the naming rules the uploader and the collector share."""
    return bool(path) and lognames.problem(path, lognames.MAX_NAME) is None and ".." not in path.split("/")


@dataclass(frozen=True)
class Span:
    start: int
    end: int  # inclusive, as in Content-Range

    @property
    def length(self) -> int:
        return self.end - self.start + 1


class Unsatisfiable(ValueError):
    """416: the range asked for is not in the file."""


def byte_range(header: str | None, size: int) -> Span | None:
    """The one range of a `Range: bytes=...` header (RFC 9110 14.2), None for the whole file; several ranges
    or another unit are answered with the whole file, as the RFC allows."""
    if not header:
        return None
    match = _RANGE.fullmatch(header.strip())
    if match is None:
        return None
    first, last = match.groups()
    if first == "" and last == "":
        return None
    if first == "":  # the last N bytes
        count = int(last)
        if count == 0 or size == 0:
            raise Unsatisfiable(f"bytes */{size}")
        return Span(max(size - count, 0), size - 1)
    start = int(first)
    if start >= size:
        raise Unsatisfiable(f"bytes */{size}")
    end = min(int(last), size - 1) if last else size - 1
    if end < start:
        return None
    return Span(start, end)


def content_disposition(filename: str) -> str:
    """attachment with an ASCII fallback and the exact name in RFC 8187 form: a name can't break the header."""
    fallback = re.sub(r"[^A-Za-z0-9._-]+", "_", filename)[:100] or "download"
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


def file_url(job_id: str, node_id: str, path: str) -> str:
    """Relative to the report page (`.../jobs/{jobId}`): `{jobId}/files/{nodeId}/{path}`."""
    return f"{quote(job_id)}/files/{quote(node_id)}/{quote(path)}"


def node_files_url(job_id: str, node_id: str) -> str:
    return f"{quote(job_id)}/files/{quote(node_id)}"


def dump_url(job_id: str, sha256: str) -> str:
    return f"{quote(job_id)}/dumps/{quote(sha256)}"
