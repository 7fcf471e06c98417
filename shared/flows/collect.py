"""The collect triggers' flow: stream a `job-logs` blob, index it, rebuild the report.

Containers come in as parameters (`shared.adapters.blobs.BlobContainer`). Every write is an overwrite of a
name derived from the input, so re-running on the same blob is harmless.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, unquote

from shared.adapters.blobs import BlobContainer
from shared.adapters.services import Services
from shared.pure import blob_layout as layout
from shared.pure import report
from shared.pure.crashdump import CrashDumpScanner
from shared.pure.logscan import LogScanner
from shared.pure.settings import LOGS_CONTAINER

log = logging.getLogger(__name__)

PREFETCH_DEPTH = 2  # chunks downloaded ahead while the current one is hashed

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
    rest = name.removeprefix(layout.files_prefix(job_id))
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
    if record["kind"] == layout.LOG:
        record["log"] = {"lines": int(meta.get("lines", 0)), "errorLines": int(meta.get("errorlines", 0))}
    elif record["kind"] == layout.CRASH_DUMP:
        names = ("format", "executable", "signalName", "exceptionCode", "fingerprint")
        record["crashDump"] = {k: unquote(meta[k.lower()]) if k.lower() in meta else None for k in names}
    return record


def list_file_records(reports: BlobContainer, job_id: str, node_id: str | None = None) -> list[dict[str, Any]]:
    prefix = layout.files_prefix(job_id, node_id)
    out = []
    for item in reports.list(prefix, metadata=True):
        record = _record_from_listing(job_id, item.name, item.metadata)
        if record is not None:
            out.append(record)
    return out


def index_file(logs: BlobContainer, reports: BlobContainer, blob: layout.LogBlob,
               tail_lines: int = 50) -> dict[str, Any] | None:
    """Stream one log or crash dump and write its index record; None if the blob has gone."""
    download = logs.open(blob.name)
    if download is None:
        return None
    scanner = LogScanner(tail_lines) if blob.kind == layout.LOG else CrashDumpScanner()
    for chunk in _prefetched(download.chunks()):
        scanner.feed(chunk)
    summary = scanner.result()
    record = report.file_record(
        blob, size=summary.size, sha256=summary.sha256, content_type=download.content_type, summary=summary.to_dict()
    )
    reports.write_json(layout.file_record_name(blob), record, metadata=_record_metadata(record))
    log.info("collect.indexed", extra={"jobId": blob.job_id, "nodeId": blob.node_id, "kind": blob.kind,
                                        "path": layout.safe_preview(blob.path), "size": summary.size})
    return record


def refresh_node(logs: BlobContainer, reports: BlobContainer, job_id: str, node_id: str) -> Mapping | None:
    """Check the node's manifest (if it has arrived) against the index records; write the node record."""
    name = layout.manifest_name(job_id, node_id)

    def build(_current) -> Mapping[str, Any]:
        try:
            raw = logs.read(name, report.MAX_MANIFEST_BYTES)
            if raw is None:
                return report.invalid_manifest_record(job_id, node_id, "manifest disappeared")
            manifest = report.parse_manifest(raw, job_id, node_id)
        except (ValueError, report.ManifestInvalid) as exc:
            return report.invalid_manifest_record(job_id, node_id, str(exc))
        return report.verify_manifest(manifest, list_file_records(reports, job_id, node_id))

    if not logs.exists(name):
        return None
    record = reports.rewrite_json(layout.node_record_name(job_id, node_id), build)
    log.info("collect.node", extra={"jobId": job_id, "nodeId": node_id, "collected": record.get("collected")})
    return record


def _node_records(reports: BlobContainer, job_id: str) -> list[dict[str, Any]]:
    records = (reports.read_json(item.name) for item in reports.list(layout.nodes_prefix(job_id)))
    return [r for r in records if r is not None]


def rebuild_report(logs: BlobContainer, reports: BlobContainer, job_id: str,
                   node_statuses: NodeStatuses = no_node_statuses,
                   now: Callable[[], datetime] = lambda: datetime.now(UTC),
                   outcome: Mapping[str, Any] | None = None) -> Mapping[str, Any]:
    """Write `{jobId}/report.json` from what is indexed now. The watchdog passes the outcome it has just
    written; the collect triggers read it."""
    statuses = list(node_statuses(job_id))

    def build(_current) -> Mapping[str, Any]:
        known = outcome if outcome is not None else reports.read_json(layout.outcome_name(job_id))
        return report.assemble_report(
            job_id, known, statuses, list_file_records(reports, job_id), _node_records(reports, job_id),
            generated_at=now().astimezone(UTC).isoformat(),
        )

    return reports.rewrite_json(layout.report_name(job_id), build)


def record_rejected(logs: BlobContainer, reports: BlobContainer, bad: layout.BadBlobName,
                    raw_name: str) -> dict[str, Any]:
    # The record is what matters: an unaddressable name simply has no size to give.
    record = {"schema": "rejected-blob.v1", "container": LOGS_CONTAINER, **bad.to_dict(),
              "size": logs.size(raw_name)}
    reports.write_json(layout.rejected_blob_record_name(bad), record)
    log.warning("collect.rejected", extra={"rule": bad.rule, "blob": bad.name})
    return record


def _report_due(blob: layout.LogBlob, node: Mapping[str, Any] | None) -> bool:
    # Rebuilding on every log would list the whole job per file (quadratic in files per job).
    # A node's manifest comes last, so rebuilding on manifests, on the file that completes a node
    # and on crash dumps (few, and wanted early) keeps the report current at linear cost.
    return blob.kind in (layout.MANIFEST, layout.CRASH_DUMP) or bool(node and node.get("collected"))


def collect_blob(logs: BlobContainer, reports: BlobContainer, blob_name: str,
                 node_statuses: NodeStatuses = no_node_statuses, tail_lines: int = 50,
                 always_rebuild: bool = False) -> dict[str, Any]:
    """Entry point for both collect triggers. Returns what was done (for logs and tests)."""
    parsed = layout.parse_log_blob(blob_name)
    if isinstance(parsed, layout.BadBlobName):
        record_rejected(logs, reports, parsed, blob_name)
        return {"status": "rejected", "rule": parsed.rule, "record": layout.rejected_blob_record_name(parsed)}
    result: dict[str, Any] = {"status": "manifest" if parsed.kind == layout.MANIFEST else "indexed",
                              "jobId": parsed.job_id, "nodeId": parsed.node_id}
    if parsed.kind != layout.MANIFEST:
        record = index_file(logs, reports, parsed, tail_lines)
        if record is None:
            log.warning("collect.vanished", extra={"blob": layout.safe_preview(blob_name)})
            return {**result, "status": "vanished"}
        result["record"] = layout.file_record_name(parsed)
    node = refresh_node(logs, reports, parsed.job_id, parsed.node_id)
    result["nodeCollected"] = None if node is None else node.get("collected")
    result["collectionComplete"] = None
    if always_rebuild or _report_due(parsed, node):
        rebuilt = rebuild_report(logs, reports, parsed.job_id, node_statuses)
        result["collectionComplete"] = rebuilt.get("collectionComplete")
    return result


def on_blob(services: Services, blob_name: str, *, crash_dump_trigger: bool) -> dict:
    """A blob trigger fired. collect_log sees every name in the container (so names outside the layout are
    recorded, not missed) and leaves crash dumps to collect_crash_dump, which sees only those."""
    if not crash_dump_trigger:
        parsed = layout.parse_log_blob(blob_name)
        if isinstance(parsed, layout.LogBlob) and parsed.kind == layout.CRASH_DUMP:
            return {"status": "left to collect_crash_dump"}
    batch, store = services.batch, services.store

    def statuses(job_id: str) -> list[Mapping[str, Any]]:
        return report.node_rows(batch.node_runs(job_id), batch.tasks(job_id))

    return collect_blob(store.logs, store.reports, blob_name, node_statuses=statuses)
