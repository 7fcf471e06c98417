"""Naming rules for what nodes upload, shared by the uploader (on the node) and the collector.

Standard library only: the node runs this file as shipped. A path that breaks a rule is never dropped and
never voids its node: it is stored under a safe name (`_renamed/<hash>/<tail>`) and its original is kept,
escaped, beside it.

Layout in the `job-logs` container (one release-task run writes one runId):

    {jobId}/{nodeId}/bundles/{runId}.zip            the node's logs, one zip (parts: .zip.000, .zip.001 ...)
    {jobId}/{nodeId}/crashdumps/{runId}/{path}.gz   each crash dump, gzip on its own
    {jobId}/{nodeId}/manifest.json                  written last, create-only: what the run uploaded
    {jobId}/_tasks/crashdumps/{taskId}/{file}       a failing task's own dumps (Batch outputFiles, as is)
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

MANIFEST_NAME = "manifest.json"
MANIFEST_SCHEMA = "job-logs-manifest.v2"
BUNDLES_DIR = "bundles"
CRASH_DIR = "crashdumps"
TASKS_PSEUDO_NODE = "_tasks"  # failing tasks upload their own dumps here: the node id is unknown at submit
GZIP_SUFFIX = ".gz"
RENAMED_DIR = "_renamed"
# On a Batch node a job's task folders sit at workitems/{jobId}/job-1/{taskId}/ (AZ_BATCH_TASK_DIR).
TASKS_DIR = "job-1"

MAX_NAME = 1024  # Azure's limit on a blob name
MAX_SEGMENT = 255
MAX_DEPTH = 64
# Cc control, Cf format (bidi overrides, zero-width), Cs surrogates, Co private use, Cn unassigned.
BAD_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn"})
_RUN_ID_RE = re.compile(r"[0-9]{8}T[0-9]{6}Z-[0-9a-f]{8}")
_PART_RE = re.compile(r"\.[0-9]{3}")
_SAFE_TAIL = re.compile(r"[^A-Za-z0-9._-]+")
_PREVIEW = 200


def problem(name: object, max_length: int = MAX_NAME) -> tuple[str, str] | None:
    """(rule, message) for the first rule a '/'-separated name breaks, or None if it keeps them all."""
    if not isinstance(name, str):
        return "not_text", "name is not text"
    if not name:
        return "empty", "name is empty"
    if len(name) > max_length:
        return "too_long", f"name is {len(name)} characters; the limit is {max_length}"
    for ch in name:
        category = unicodedata.category(ch)
        if category in BAD_CATEGORIES:
            return "bad_character", f"contains {ch!r} (Unicode category {category})"
    if "\\" in name:
        return "backslash", "contains a backslash"
    if unicodedata.normalize("NFC", name) != name:
        return "not_nfc", "is not in Unicode normal form C"
    segments = name.split("/")
    if len(segments) > MAX_DEPTH:
        return "too_deep", f"has {len(segments)} path segments; the limit is {MAX_DEPTH}"
    for segment in segments:
        if segment == "":
            return "empty_segment", "has an empty path segment (leading, trailing or double '/')"
        if segment in (".", ".."):
            return "path_traversal", f"has a {segment!r} path segment"
        if len(segment) > MAX_SEGMENT:
            return "segment_too_long", f"has a segment over {MAX_SEGMENT} characters"
        if segment != segment.strip():
            return "whitespace", "has a segment with leading or trailing whitespace"
    return None


def preview(name: object) -> str:
    """Printable ASCII of any name (everything else escaped), at most ~200 characters: safe to log and store."""
    text = name if isinstance(name, str) else repr(name)
    escaped = text.encode("unicode_escape", "backslashreplace").decode("ascii")
    return escaped if len(escaped) <= _PREVIEW else escaped[:_PREVIEW] + f"...({len(text)} chars)"


def name_digest(name: object) -> str:
    text = name if isinstance(name, str) else repr(name)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def safe_path(path: str, max_length: int = 900) -> tuple[str, str | None]:
    """The name a file is stored under, and its original (escaped) when the original breaks a rule.

    max_length leaves room for the blob name's prefix ({jobId}/{nodeId}/crashdumps/{runId}/ and .gz).
    """
    broken = problem(path, max_length)
    if broken is None:
        return path, None
    tail = path.rsplit("/", 1)[-1] if isinstance(path, str) else ""
    tail = _SAFE_TAIL.sub("_", unicodedata.normalize("NFKD", tail).encode("ascii", "ignore").decode()).strip("._")
    safe = f"{RENAMED_DIR}/{name_digest(path)[:16]}" + (f"/{tail[:80]}" if tail else "")
    return safe, preview(path)


def is_run_id(value: str) -> bool:
    return _RUN_ID_RE.fullmatch(value) is not None


def manifest_blob(job_id: str, node_id: str) -> str:
    return f"{job_id}/{node_id}/{MANIFEST_NAME}"


def bundle_blob(job_id: str, node_id: str, run_id: str) -> str:
    return f"{job_id}/{node_id}/{BUNDLES_DIR}/{run_id}.zip"


def crash_dump_blob(job_id: str, node_id: str, run_id: str, path: str) -> str:
    return f"{job_id}/{node_id}/{CRASH_DIR}/{run_id}/{path}{GZIP_SUFFIX}"


def part_blob(base: str, index: int, count: int) -> str:
    """A blob over the single-upload limit goes up in parts; one part keeps the plain name."""
    return base if count == 1 else f"{base}.{index:03d}"


def task_of(path: str) -> str | None:
    """The task whose folder a path (relative to the job's folder on the node) lies in, if any."""
    parts = path.split("/")
    return parts[1] if len(parts) > 2 and parts[0] == TASKS_DIR else None


def is_part(name: str) -> bool:
    return _PART_RE.fullmatch(name[-4:]) is not None
