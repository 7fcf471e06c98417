"""Blob names in `job-logs` (what nodes write) and `job-reports` (what the functions write).

Parsers never raise on a bad name: they return a BadBlobName saying which rule it broke. The rules for
what nodes write are shared with the uploader (`shared.node.lognames`), so both sides agree on them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from shared.node import lognames
from shared.pure.request import RESERVED_JOB_IDS, is_batch_id

# job-reports folders that are not jobs (the request model refuses these as job ids).
REJECTED_PREFIX = "rejected/"
OUTCOMES_PREFIX = "outcomes/"
REJECTED_BLOBS_PREFIX = "rejected-blobs/"

MANIFEST, BUNDLE, CRASH_DUMP = "manifest", "bundle", "crashdump"
TASKS_PSEUDO_NODE = lognames.TASKS_PSEUDO_NODE
MAX_NAME = lognames.MAX_NAME
# Batch node ids (e.g. tvmps_<64 hex>_d) run longer than job ids.
_NODE_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,128}")
_BUNDLE_RE = re.compile(r"(?P<run>[^/]+)\.zip(?:\.(?P<part>[0-9]{3}))?")


@dataclass(frozen=True)
class LogBlob:
    job_id: str
    node_id: str
    kind: str  # MANIFEST, BUNDLE or CRASH_DUMP
    path: str  # after {jobId}/{nodeId}/, e.g. "crashdumps/{runId}/job-1/t1/wd/core.1.gz"
    name: str
    run_id: str | None = None  # bundles and the release task's crash dumps
    part: int | None = None  # a part of a blob uploaded in parts (.000, .001, ...)

    @property
    def from_failing_task(self) -> bool:
        """Batch's outputFiles upload of a failing task: the dump as it was, not compressed."""
        return self.node_id == TASKS_PSEUDO_NODE

    @property
    def task_id(self) -> str | None:
        """The task a failing task's own upload came from (`_tasks/crashdumps/{taskId}/...`)."""
        return self.path.split("/")[1] if self.from_failing_task and self.kind == CRASH_DUMP else None


@dataclass(frozen=True)
class BadBlobName:
    name: str  # escaped, shortened: safe to log and store
    rule: str
    message: str
    name_sha256: str

    def to_dict(self) -> dict:
        return {"name": self.name, "rule": self.rule, "message": self.message, "nameSha256": self.name_sha256}


def safe_preview(name: object) -> str:
    return lognames.preview(name)


def _bad(name: object, rule: str, message: str) -> BadBlobName:
    return BadBlobName(lognames.preview(name), rule, message, lognames.name_digest(name))


def check_name(name: object, max_length: int = MAX_NAME) -> BadBlobName | list[str]:
    """Rules common to every container: returns the segments, or why the name is refused."""
    broken = lognames.problem(name, max_length)
    if broken is not None:
        return _bad(name, *broken)
    return name.split("/")


def parse_log_blob(name: object) -> LogBlob | BadBlobName:
    """`{jobId}/{nodeId}/manifest.json`, `.../bundles/{runId}.zip[.NNN]`, `.../crashdumps/...`."""
    segments = check_name(name)
    if isinstance(segments, BadBlobName):
        return segments
    if len(segments) < 3:
        return _bad(name, "outside_layout", "expected {jobId}/{nodeId}/manifest.json, bundles/ or crashdumps/")
    job_id, node_id, top = segments[0], segments[1], segments[2]
    if not is_batch_id(job_id):
        return _bad(name, "bad_job_id", "job id segment breaks the Batch id rules")
    if job_id.lower() in RESERVED_JOB_IDS:
        # Its report would land among the orchestrator's own records (rejected/, outcomes/, ...).
        return _bad(name, "reserved_job_id", f"job id segment is a reserved name ({', '.join(sorted(RESERVED_JOB_IDS))})")
    if not _NODE_ID_RE.fullmatch(node_id):
        return _bad(name, "bad_node_id", "node id segment must be 1-128 letters, digits, '-' or '_'")
    rest = "/".join(segments[2:])
    if len(segments) == 3 and top == lognames.MANIFEST_NAME and node_id != TASKS_PSEUDO_NODE:
        return LogBlob(job_id, node_id, MANIFEST, rest, name)
    if len(segments) == 4 and top == lognames.BUNDLES_DIR and node_id != TASKS_PSEUDO_NODE:
        match = _BUNDLE_RE.fullmatch(segments[3])
        if match and lognames.is_run_id(match["run"]):
            part = int(match["part"]) if match["part"] else None
            return LogBlob(job_id, node_id, BUNDLE, rest, name, match["run"], part)
    if top == lognames.CRASH_DIR and len(segments) >= 5:
        if node_id == TASKS_PSEUDO_NODE:
            if is_batch_id(segments[3]):
                return LogBlob(job_id, node_id, CRASH_DUMP, rest, name)
        elif lognames.is_run_id(segments[3]):
            part = int(name[-3:]) if lognames.is_part(name) else None
            return LogBlob(job_id, node_id, CRASH_DUMP, rest, name, segments[3], part)
    return _bad(name, "outside_layout", "not a manifest.json, a bundles/{runId}.zip or a crashdumps/{runId}/ file")


def dump_path(blob: LogBlob) -> str:
    """Where a crash dump was on the node, relative to the job's folder (workitems/{jobId}/)."""
    parts = blob.path.split("/")
    if blob.from_failing_task:
        # outputFiles keep the path below the task's working directory.
        return f"{lognames.TASKS_DIR}/{parts[1]}/wd/" + "/".join(parts[2:])
    inner = "/".join(parts[2:])
    if blob.part is not None:
        inner = inner[:-4]
    return inner.removesuffix(lognames.GZIP_SUFFIX)


# ----- names the functions write in job-reports --------------------------------------------------

def rejection_prefix(message_id: str) -> str:
    """Rejections are keyed by their message, so a sender can find theirs among all others."""
    return lognames.name_digest(message_id)[:32]


def report_name(job_id: str) -> str:
    return f"{job_id}/report.json"


def outcome_name(job_id: str) -> str:
    return f"{job_id}/outcome.json"


def request_name(job_id: str) -> str:
    return f"{job_id}/request.json"


def tasks_name(job_id: str) -> str:
    """Every task's result, one JSON object per line."""
    return f"{job_id}/tasks.jsonl"


def nodes_prefix(job_id: str) -> str:
    return f"{job_id}/nodes/"


def node_record_name(job_id: str, node_id: str) -> str:
    return f"{nodes_prefix(job_id)}{node_id}.json"


def index_prefix(job_id: str) -> str:
    return f"{job_id}/index/"


def index_name(job_id: str, node_id: str) -> str:
    """The node's file index, one JSON object per file and line."""
    return f"{index_prefix(job_id)}{node_id}.jsonl"


def crash_records_prefix(job_id: str) -> str:
    return f"{job_id}/crashdumps/"


def crash_record_name(job_id: str, sha256: str) -> str:
    """Keyed by the dump's content: the failing task's copy and the release task's are one record."""
    return f"{job_id}/crashdumps/{sha256}.json"


def refused_name(job_id: str, node_id: str, digest: str) -> str:
    return f"{job_id}/refused/{node_id}-{digest[:16]}.json"


def manifest_name(job_id: str, node_id: str) -> str:
    return lognames.manifest_blob(job_id, node_id)


def rejected_blob_record_name(bad: BadBlobName) -> str:
    # Keyed by the name's hash: the name itself is what could not be trusted.
    return f"{REJECTED_BLOBS_PREFIX}{bad.name_sha256}.json"
