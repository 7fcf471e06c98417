"""Blob names in `job-logs` and `job-reports`: pure parsing of untrusted names.

Parsers never raise on a bad name: they return a BadBlobName saying which rule it broke.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass

from shared.pure.request import is_batch_id

# job-reports folders that are not jobs (the request model refuses these as job ids).
REJECTED_PREFIX = "rejected/"
OUTCOMES_PREFIX = "outcomes/"
REJECTED_BLOBS_PREFIX = "rejected-blobs/"

LOG, CRASH_DUMP, MANIFEST = "log", "crashdump", "manifest"
KIND_DIRS = {"logs": LOG, "crashdumps": CRASH_DUMP}
DIR_OF_KIND = {v: k for k, v in KIND_DIRS.items()}
MANIFEST_NAME = "manifest.json"

MAX_NAME = 1024  # Azure's limit on a blob name
# A file's index record name adds "files/" and ".json": it must still fit the limit.
MAX_LOG_NAME = MAX_NAME - len("files/") - len(".json")
MAX_SEGMENT = 255
MAX_DEPTH = 64
# Batch node ids (e.g. tvmps_<64 hex>_d) run longer than job ids.
_NODE_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
# Cc control, Cf format (bidi overrides, zero-width), Cs surrogates, Co private use, Cn unassigned.
_BAD_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn"})
_PREVIEW = 200


@dataclass(frozen=True)
class LogBlob:
    job_id: str
    node_id: str
    kind: str  # LOG, CRASH_DUMP or MANIFEST
    path: str  # relative to {jobId}/{nodeId}/, e.g. "logs/job-1/t1/stdout.txt"
    name: str


@dataclass(frozen=True)
class ReportBlob:
    job_id: str
    kind: str  # "report", "outcome", "file", "node"
    path: str  # after {jobId}/
    name: str


@dataclass(frozen=True)
class BadBlobName:
    name: str  # escaped, shortened: safe to log and store
    rule: str
    message: str
    name_sha256: str

    def to_dict(self) -> dict:
        return {"name": self.name, "rule": self.rule, "message": self.message, "nameSha256": self.name_sha256}


def safe_preview(name: str) -> str:
    """Printable ASCII preview of any name (escapes everything else), at most ~200 chars."""
    escaped = name.encode("unicode_escape", "backslashreplace").decode("ascii")
    return escaped if len(escaped) <= _PREVIEW else escaped[:_PREVIEW] + f"...({len(name)} chars)"


def _reject(name: object, rule: str, message: str) -> BadBlobName:
    text = name if isinstance(name, str) else repr(name)
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
    return BadBlobName(safe_preview(text), rule, message, digest)


def check_name(name: object, max_length: int = MAX_NAME) -> BadBlobName | list[str]:
    """Rules common to every container: returns the segments, or why the name is refused."""
    if not isinstance(name, str):
        return _reject(name, "not_text", "blob name is not text")
    if not name:
        return _reject(name, "empty", "blob name is empty")
    if len(name) > max_length:
        return _reject(name, "too_long", f"blob name is {len(name)} characters; the limit is {max_length}")
    for ch in name:
        cat = unicodedata.category(ch)
        if cat in _BAD_CATEGORIES:
            return _reject(name, "bad_character", f"contains {ch!r} (Unicode category {cat})")
    if "\\" in name:
        return _reject(name, "backslash", "contains a backslash")
    if unicodedata.normalize("NFC", name) != name:
        return _reject(name, "not_nfc", "is not in Unicode normal form C")
    segments = name.split("/")
    if len(segments) > MAX_DEPTH:
        return _reject(name, "too_deep", f"has {len(segments)} path segments; the limit is {MAX_DEPTH}")
    for seg in segments:
        if seg == "":
            return _reject(name, "empty_segment", "has an empty path segment (leading, trailing or double '/')")
        if seg in (".", ".."):
            return _reject(name, "path_traversal", f"has a {seg!r} path segment")
        if len(seg) > MAX_SEGMENT:
            return _reject(name, "segment_too_long", f"has a segment over {MAX_SEGMENT} characters")
        if seg != seg.strip():
            return _reject(name, "whitespace", "has a segment with leading or trailing whitespace")
    return segments


def parse_log_blob(name: object) -> LogBlob | BadBlobName:
    """`{jobId}/{nodeId}/logs/...`, `{jobId}/{nodeId}/crashdumps/...`, `{jobId}/{nodeId}/manifest.json`."""
    segments = check_name(name, MAX_LOG_NAME)
    if isinstance(segments, BadBlobName):
        return segments
    if len(segments) < 3:
        return _reject(name, "outside_layout", "expected {jobId}/{nodeId}/logs|crashdumps/... or manifest.json")
    job_id, node_id, top = segments[0], segments[1], segments[2]
    if not is_batch_id(job_id):
        return _reject(name, "bad_job_id", "job id segment breaks the Batch id rules")
    if not _NODE_ID_RE.fullmatch(node_id):
        return _reject(name, "bad_node_id", "node id segment must be 1-128 letters, digits, '-' or '_'")
    rest = "/".join(segments[2:])
    if len(segments) == 3 and top == MANIFEST_NAME:
        return LogBlob(job_id, node_id, MANIFEST, rest, name)
    if top in KIND_DIRS and len(segments) >= 4:
        return LogBlob(job_id, node_id, KIND_DIRS[top], rest, name)
    return _reject(name, "outside_layout", "third segment must be 'logs/', 'crashdumps/' or 'manifest.json'")


def parse_report_blob(name: object) -> ReportBlob | BadBlobName:
    """`{jobId}/report.json`, `{jobId}/outcome.json`, `{jobId}/files/...json`, `{jobId}/nodes/{nodeId}.json`."""
    segments = check_name(name)
    if isinstance(segments, BadBlobName):
        return segments
    job_id, rest = segments[0], "/".join(segments[1:])
    if not is_batch_id(job_id):
        return _reject(name, "bad_job_id", "job id segment breaks the Batch id rules")
    if rest in ("report.json", "outcome.json"):
        return ReportBlob(job_id, rest.removesuffix(".json"), rest, name)
    if len(segments) >= 5 and segments[1] == "files" and rest.endswith(".json"):
        return ReportBlob(job_id, "file", rest, name)
    if len(segments) == 3 and segments[1] == "nodes" and segments[2].endswith(".json"):
        return ReportBlob(job_id, "node", rest, name)
    return _reject(name, "outside_layout", "not a report, outcome, files/ or nodes/ blob")


# Names the collector writes in `job-reports`.
def report_name(job_id: str) -> str:
    return f"{job_id}/report.json"


def outcome_name(job_id: str) -> str:
    return f"{job_id}/outcome.json"


def files_prefix(job_id: str, node_id: str | None = None) -> str:
    return f"{job_id}/files/" + (f"{node_id}/" if node_id else "")


def file_record_name(blob: LogBlob) -> str:
    return f"{files_prefix(blob.job_id, blob.node_id)}{blob.path}.json"


def record_path_from_name(job_id: str, node_id: str, record_name: str) -> str:
    """Inverse of file_record_name: the file's path relative to {jobId}/{nodeId}/."""
    return record_name.removeprefix(files_prefix(job_id, node_id)).removesuffix(".json")


def nodes_prefix(job_id: str) -> str:
    return f"{job_id}/nodes/"


def node_record_name(job_id: str, node_id: str) -> str:
    return f"{nodes_prefix(job_id)}{node_id}.json"


def manifest_name(job_id: str, node_id: str) -> str:
    return f"{job_id}/{node_id}/{MANIFEST_NAME}"


def rejected_blob_record_name(bad: BadBlobName) -> str:
    # Keyed by the name's hash: the name itself is what could not be trusted.
    return f"{REJECTED_BLOBS_PREFIX}{bad.name_sha256}.json"


def request_name(job_id: str) -> str:
    return f"{job_id}/request.json"
