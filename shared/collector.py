"""The I/O side of the collect blob triggers: stream a `job-logs` blob, index it, rebuild the report.

Clients come in as parameters. Create them with CLIENT_KWARGS so the SDK fetches bounded chunks
(its default first GET is 32 MiB). Every write is an overwrite of a name derived from the input,
so re-running on the same blob is harmless.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, unquote

from azure.core import MatchConditions
from azure.core.exceptions import (
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.storage.blob import ContainerClient, ContentSettings

from shared import blob_layout as bl
from shared import report as rp
from shared.crashdump import CrashDumpScanner
from shared.logscan import LogScanner

log = logging.getLogger(__name__)

CHUNK_SIZE = 4 * 1024 * 1024
CLIENT_KWARGS = {"max_single_get_size": CHUNK_SIZE, "max_chunk_get_size": CHUNK_SIZE}
PREFETCH_DEPTH = 2  # chunks downloaded ahead while the current one is hashed
MAX_JSON_BYTES = 16 * 1024 * 1024
_JSON = ContentSettings(content_type="application/json")
_CONFLICT_ATTEMPTS = 12

NodeStatuses = Callable[[str], list[Mapping[str, Any]]]


def no_node_statuses(job_id: str) -> list[Mapping[str, Any]]:
    return []


def _prefetched(chunks: Iterator[bytes], depth: int = PREFETCH_DEPTH) -> Iterator[bytes]:
    """Download the next chunks on a thread while the caller hashes this one (hashlib drops the GIL)."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def pump() -> None:
        try:
            for chunk in chunks:
                while not stop.is_set():
                    try:
                        q.put(chunk, timeout=0.5)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(done)
        except BaseException as exc:  # re-raised in the caller's thread
            q.put(exc)

    worker = threading.Thread(target=pump, name="blob-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            item = q.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        worker.join(timeout=5)


def _read_small(container: ContainerClient, name: str, limit: int = MAX_JSON_BYTES) -> bytes | None:
    """A small blob's bytes; None if absent; ValueError if over the limit (checked before reading)."""
    try:
        downloader = container.get_blob_client(name).download_blob()
    except ResourceNotFoundError:
        return None
    if downloader.size > limit:
        raise ValueError(f"{downloader.size} bytes; the limit is {limit}")
    return downloader.readall()


def _write_json(container: ContainerClient, name: str, body: Mapping[str, Any], metadata=None) -> None:
    data = json.dumps(body, indent=1, sort_keys=True, ensure_ascii=False).encode()
    container.upload_blob(name, data, overwrite=True, metadata=metadata, content_settings=_JSON)


def _rewrite(container: ContainerClient, name: str, build: Callable[[], Mapping[str, Any]]) -> Mapping[str, Any]:
    """Read-build-write with the blob's ETag, so concurrent triggers can't leave a stale summary.

    Whoever writes last built from a listing taken after every earlier write.
    """
    blob = container.get_blob_client(name)
    for attempt in range(_CONFLICT_ATTEMPTS):
        if attempt:
            # Jittered backoff: without it, a burst of triggers for one job keeps colliding.
            time.sleep(random.uniform(0, min(2.0, 0.05 * 2**attempt)))
        try:
            etag = blob.get_blob_properties().etag
        except ResourceNotFoundError:
            etag = None
        body = build()
        data = json.dumps(body, indent=1, sort_keys=True, ensure_ascii=False).encode()
        try:
            if etag is None:
                blob.upload_blob(data, overwrite=False, content_settings=_JSON)
            else:
                blob.upload_blob(
                    data, overwrite=True, etag=etag, match_condition=MatchConditions.IfNotModified,
                    content_settings=_JSON,
                )
            return body
        except (ResourceExistsError, ResourceModifiedError):
            continue
        except HttpResponseError as exc:
            if exc.status_code in (409, 412):
                continue
            raise
    raise RuntimeError(f"{bl.safe_preview(name)}: still changing after {_CONFLICT_ATTEMPTS} attempts")


# Index records also carry their key figures as blob metadata, so the report is rebuilt from one
# listing instead of a read per file.
def _record_metadata(record: Mapping[str, Any]) -> dict[str, str]:
    meta = {"kind": record["kind"], "size": str(record["size"]), "sha256": record["sha256"]}
    if "log" in record:
        meta["lines"] = str(record["log"]["lines"])
        meta["errorlines"] = str(record["log"]["errorLines"])
    if "crashDump" in record:
        for key, value in record["crashDump"].items():
            if value is not None and key in ("format", "executable", "signalName", "exceptionCode", "fingerprint"):
                meta[key.lower()] = quote(str(value), safe="")
    return meta


def _record_from_listing(job_id: str, name: str, meta: Mapping[str, str]) -> dict[str, Any] | None:
    rest = name.removeprefix(bl.files_prefix(job_id))
    node_id, _, path = rest.partition("/")
    if not path.endswith(".json") or "size" not in meta:
        return None
    record: dict[str, Any] = {
        "jobId": job_id,
        "nodeId": node_id,
        "kind": meta.get("kind"),
        "path": path.removesuffix(".json"),
        "size": int(meta["size"]),
        "sha256": meta.get("sha256"),
    }
    if record["kind"] == bl.LOG:
        record["log"] = {"lines": int(meta.get("lines", 0)), "errorLines": int(meta.get("errorlines", 0))}
    elif record["kind"] == bl.CRASH_DUMP:
        names = ("format", "executable", "signalName", "exceptionCode", "fingerprint")
        record["crashDump"] = {k: unquote(meta[k.lower()]) if k.lower() in meta else None for k in names}
    return record


def list_file_records(reports: ContainerClient, job_id: str, node_id: str | None = None) -> list[dict[str, Any]]:
    prefix = bl.files_prefix(job_id, node_id)
    out = []
    for item in reports.list_blobs(name_starts_with=prefix, include=["metadata"]):
        record = _record_from_listing(job_id, item.name, item.metadata or {})
        if record is not None:
            out.append(record)
    return out


def index_file(logs: ContainerClient, reports: ContainerClient, blob: bl.LogBlob,
               tail_lines: int = 50) -> dict[str, Any] | None:
    """Stream one log or crash dump and write its index record; None if the blob has gone."""
    try:
        downloader = logs.get_blob_client(blob.name).download_blob()
    except ResourceNotFoundError:
        return None
    scanner = LogScanner(tail_lines) if blob.kind == bl.LOG else CrashDumpScanner()
    for chunk in _prefetched(downloader.chunks()):
        scanner.feed(chunk)
    summary = scanner.result()
    content_type = downloader.properties.content_settings.content_type
    record = rp.file_record(
        blob, size=summary.size, sha256=summary.sha256, content_type=content_type, summary=summary.to_dict()
    )
    _write_json(reports, bl.file_record_name(blob), record, metadata=_record_metadata(record))
    log.info("collect.indexed", extra={"jobId": blob.job_id, "nodeId": blob.node_id, "kind": blob.kind,
                                        "path": bl.safe_preview(blob.path), "size": summary.size})
    return record


def refresh_node(logs: ContainerClient, reports: ContainerClient, job_id: str, node_id: str) -> Mapping | None:
    """Check the node's manifest (if it has arrived) against the index records; write the node record."""
    name = bl.manifest_name(job_id, node_id)

    def build() -> Mapping[str, Any]:
        try:
            raw = _read_small(logs, name, rp.MAX_MANIFEST_BYTES)
            if raw is None:
                return rp.invalid_manifest_record(job_id, node_id, "manifest disappeared")
            manifest = rp.parse_manifest(raw, job_id, node_id)
        except (ValueError, rp.ManifestInvalid) as exc:
            return rp.invalid_manifest_record(job_id, node_id, str(exc))
        return rp.verify_manifest(manifest, list_file_records(reports, job_id, node_id))

    if not logs.get_blob_client(name).exists():
        return None
    record = _rewrite(reports, bl.node_record_name(job_id, node_id), build)
    log.info("collect.node", extra={"jobId": job_id, "nodeId": node_id, "collected": record.get("collected")})
    return record


def _node_records(reports: ContainerClient, job_id: str) -> list[dict[str, Any]]:
    out = []
    for item in reports.list_blobs(name_starts_with=bl.nodes_prefix(job_id)):
        raw = _read_small(reports, item.name)
        if raw is not None:
            out.append(json.loads(raw))
    return out


def rebuild_report(logs: ContainerClient, reports: ContainerClient, job_id: str,
                   node_statuses: NodeStatuses = no_node_statuses,
                   now: Callable[[], datetime] = lambda: datetime.now(UTC),
                   outcome: Mapping[str, Any] | None = None) -> Mapping[str, Any]:
    """Write `{jobId}/report.json` from what is indexed now. The watchdog passes the outcome it has just
    written; the collect triggers read it."""
    statuses = list(node_statuses(job_id))

    def build() -> Mapping[str, Any]:
        known = outcome
        if known is None:
            raw = _read_small(reports, bl.outcome_name(job_id))
            known = json.loads(raw) if raw else None
        return rp.assemble_report(
            job_id, known, statuses, list_file_records(reports, job_id), _node_records(reports, job_id),
            generated_at=now().astimezone(UTC).isoformat(),
        )

    return _rewrite(reports, bl.report_name(job_id), build)


def record_rejected(logs: ContainerClient, reports: ContainerClient, rejected: bl.Rejected,
                    raw_name: str) -> dict[str, Any]:
    size = None
    # The record is what matters: an unaddressable name simply has no size to give.
    with contextlib.suppress(HttpResponseError, ValueError, UnicodeError):
        size = logs.get_blob_client(raw_name).get_blob_properties().size
    record = {"schema": "rejected-blob.v1", "container": bl.LOGS_CONTAINER, **rejected.to_dict(), "size": size}
    _write_json(reports, bl.rejected_blob_record_name(rejected), record)
    log.warning("collect.rejected", extra={"rule": rejected.rule, "blob": rejected.name})
    return record


def _report_due(blob: bl.LogBlob, node: Mapping[str, Any] | None) -> bool:
    # Rebuilding on every log would list the whole job per file (quadratic in files per job).
    # A node's manifest comes last, so rebuilding on manifests, on the file that completes a node
    # and on crash dumps (few, and wanted early) keeps the report current at linear cost.
    return blob.kind in (bl.MANIFEST, bl.CRASH_DUMP) or bool(node and node.get("collected"))


def collect_blob(logs: ContainerClient, reports: ContainerClient, blob_name: str,
                 node_statuses: NodeStatuses = no_node_statuses, tail_lines: int = 50,
                 always_rebuild: bool = False) -> dict[str, Any]:
    """Entry point for both collect triggers. Returns what was done (for logs and tests)."""
    parsed = bl.parse_log_blob(blob_name)
    if isinstance(parsed, bl.Rejected):
        record_rejected(logs, reports, parsed, blob_name)
        return {"status": "rejected", "rule": parsed.rule, "record": bl.rejected_blob_record_name(parsed)}
    result: dict[str, Any] = {"status": "manifest" if parsed.kind == bl.MANIFEST else "indexed",
                              "jobId": parsed.job_id, "nodeId": parsed.node_id}
    if parsed.kind != bl.MANIFEST:
        record = index_file(logs, reports, parsed, tail_lines)
        if record is None:
            log.warning("collect.vanished", extra={"blob": bl.safe_preview(blob_name)})
            return {**result, "status": "vanished"}
        result["record"] = bl.file_record_name(parsed)
    node = refresh_node(logs, reports, parsed.job_id, parsed.node_id)
    result["nodeCollected"] = None if node is None else node.get("collected")
    result["collectionComplete"] = None
    if always_rebuild or _report_due(parsed, node):
        report = rebuild_report(logs, reports, parsed.job_id, node_statuses)
        result["collectionComplete"] = report.get("collectionComplete")
    return result
