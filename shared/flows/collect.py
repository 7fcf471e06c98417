"""The collect triggers: one collection per node (its manifest), one per crash dump, and a record for any
name outside the layout.

A node's bundle is streamed once, front to back, in bounded memory: each file is scanned as it passes and
its index line written out at once, and the node's totals merge into the report under its ETag. Work per
job is linear in its files; nothing here lists a job's records or asks Batch about its tasks (the
watchdog's outcome step does that, once). Every step is safe to repeat: a redelivered manifest or dump
changes nothing.
"""

from __future__ import annotations

import json
import queue
import threading
import zipfile
import zlib
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from shared.adapters.blobs import BlobContainer
from shared.node import lognames
from shared.pure import blob_layout as layout
from shared.pure import node_record as nodes
from shared.pure import report as reports_model
from shared.pure.backtrace import BacktraceFinder
from shared.pure.crashdump import CrashDumpScanner
from shared.pure.logscan import LogScanner
from shared.pure.manifest import MAX_MANIFEST_BYTES, Manifest, ManifestInvalid, Upload, parse_manifest
from shared.pure.redact import redacting_logger
from shared.pure.settings import LOGS_CONTAINER
from shared.pure.values import iso

log = redacting_logger("orchestrator.collect")

PREFETCH_DEPTH = 2  # chunks downloaded ahead while the current one is scanned
READ_WINDOW = 8 * 1024 * 1024  # one ranged GET of a bundle
SCAN_CHUNK = 1024 * 1024
INFLATE_CHUNK = 4 * 1024 * 1024  # the most one step of decompression may produce (a bomb stays bounded)


def _prefetched(chunks: Iterator[bytes], depth: int = PREFETCH_DEPTH) -> Iterator[bytes]:
    """Download the next chunks on a thread while the caller scans this one (hashlib drops the GIL)."""
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


def gunzip(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """Decompress a gzip stream chunk by chunk, never more than INFLATE_CHUNK at a time; members written
    one after another are one stream, as gunzip reads them."""
    inflater = zlib.decompressobj(wbits=31)
    open_member = False
    for chunk in chunks:
        data = chunk
        while data:
            open_member = True
            out = inflater.decompress(data, INFLATE_CHUNK)
            if out:
                yield out
            if inflater.eof:
                data, open_member = inflater.unused_data, False
                inflater = zlib.decompressobj(wbits=31)
            else:
                data = inflater.unconsumed_tail
    tail = inflater.flush()
    if tail:
        yield tail
    if open_member:
        raise zlib.error("the gzip stream ends in the middle of a member")


def update_report(reports: BlobContainer, job_id: str, now: datetime, change,
                  logs: BlobContainer | None = None) -> dict[str, Any]:
    """Apply one merge to report.json under its ETag, then recompute its totals and state. The write that
    closes the job's collection also makes its crash counts exact (see `close`)."""
    closing = False

    def build(current):
        nonlocal closing
        was_closed = bool(((current or {}).get("collection") or {}).get("closedAt"))
        report = reports_model.finish(change(current or reports_model.empty_report(job_id)), iso(now))
        closing = not was_closed and bool(report["collection"].get("closedAt"))
        return report

    report = reports.rewrite_json(layout.report_name(job_id), build)
    if closing:
        report = close(logs, reports, job_id, report, now)
    return report


def close(logs: BlobContainer | None, reports: BlobContainer, job_id: str, report: dict, now: datetime) -> dict:
    """Once, when collection closes: collect any crash dump a collected node's manifest lists whose own
    trigger has not run yet (so the report is not complete without it), then count the crash groups
    again from the job's crash records: each distinct dump once, none from a refused node, each group with
    the backtrace its dumps' tasks printed, as the node records that list the dumps say."""
    backtraces: dict[str, dict[str, Any]] = {}
    for row in report.get("nodes") or []:
        if row.get("status") != nodes.COLLECTED or not row.get("crashDumpCount"):
            continue
        record = reports.read_json(layout.node_record_name(job_id, row["nodeId"])) or {}
        for dump in record.get("crashDumps") or []:
            if dump.get("backtrace"):
                backtraces.setdefault(dump["sha256"], reports_model.brief_backtrace(
                    dump["backtrace"], lognames.task_of(dump["path"]), row["nodeId"]))
            if logs is not None and not reports.exists(layout.crash_record_name(job_id, dump["sha256"])):
                _collect_dump(logs, reports, job_id, [p["blob"] for p in dump.get("parts") or [dump]], True,
                              _release_copy(dump["blob"], row["nodeId"], dump["path"]), now)
    listed = [(item.name.rsplit("/", 1)[-1].removesuffix(".json"), item.metadata)
              for item in reports.list(layout.crash_records_prefix(job_id), metadata=True)]
    return reports.rewrite_json(layout.report_name(job_id), lambda current: reports_model.recount_crashes(
        current or report, listed, backtraces))


def record_rejected(logs: BlobContainer, reports: BlobContainer, bad: layout.BadBlobName,
                    raw_name: str) -> dict[str, Any]:
    # The record is what matters: an unaddressable name simply has no size to give. HTTP clients fold a
    # '..' segment away before sending, so asking for its size would ask about another blob.
    size = None if bad.rule == "path_traversal" else logs.size(raw_name)
    record = {"schema": "rejected-blob.v1", "container": LOGS_CONTAINER, **bad.to_dict(), "size": size}
    reports.write_json(layout.rejected_blob_record_name(bad), record)
    log.warning("collect.rejected", extra={"rule": bad.rule, "blob": bad.name})
    return record


def on_stray(logs: BlobContainer, reports: BlobContainer, blob_name: str) -> dict[str, Any]:
    """Every name in job-logs: the layout's names are left to their own triggers (no I/O); any other is
    recorded with the rule it broke, so nothing a node writes goes unseen."""
    parsed = layout.parse_log_blob(blob_name)
    if isinstance(parsed, layout.BadBlobName):
        record_rejected(logs, reports, parsed, blob_name)
        return {"status": "rejected", "rule": parsed.rule, "record": layout.rejected_blob_record_name(parsed)}
    return {"status": "in layout", "kind": parsed.kind}


# ----- a node ------------------------------------------------------------------------------------

def _refuse(reports: BlobContainer, job_id: str, node_id: str, run_id: str | None, refused: nodes.Refusal,
            now: datetime, logs: BlobContainer | None = None) -> dict[str, Any]:
    record = nodes.refused_record(job_id, node_id, run_id, refused, iso(now))
    reports.write_json(layout.refused_name(job_id, node_id, lognames.name_digest(f"{node_id}/{run_id}")), record)
    update_report(reports, job_id, now, lambda r: reports_model.merge_refused(r, record), logs)
    log.warning("collect.refused", extra={"jobId": job_id, "nodeId": node_id, "rule": refused.rule})
    return {"status": "refused", "rule": refused.rule, "jobId": job_id, "nodeId": node_id}


def _scan_bundle(logs: BlobContainer, bundle: Upload, sizes: dict[str, int], tally: nodes.NodeTally) -> Iterator[bytes]:
    """Index lines of every file in the bundle, as it streams past once."""
    for part in bundle.parts:
        if part.blob not in sizes:
            tally.problem(f"bundle part {layout.safe_preview(part.blob)} is missing")
            return
        if sizes[part.blob] != part.size:
            tally.problem(f"bundle part {layout.safe_preview(part.blob)} is {sizes[part.blob]} bytes; "
                          f"the manifest says {part.size}")
            return
    reader = logs.reader([(p.blob, p.size) for p in bundle.parts], READ_WINDOW)
    try:
        archive = zipfile.ZipFile(reader)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        tally.problem(f"bundle is not a readable zip: {exc}")
        return
    with archive:
        entries = sorted((i for i in archive.infolist() if not i.is_dir()), key=lambda i: i.header_offset)
        if len(entries) != bundle.entries:
            tally.problem(f"bundle holds {len(entries)} files; the manifest says {bundle.entries}")
        for info in entries:
            scanner, finder = LogScanner(tail_lines=0), BacktraceFinder()
            try:
                with archive.open(info) as member:
                    while chunk := member.read(SCAN_CHUNK):
                        seen = scanner.error_lines_so_far
                        scanner.feed(chunk)
                        finder.feed(chunk, error_words=scanner.error_lines_so_far > seen)
            except (zipfile.BadZipFile, zlib.error, EOFError, RuntimeError, NotImplementedError, OSError) as exc:
                # One damaged entry is reported; the rest of the node is still collected.
                tally.problem(f"{layout.safe_preview(info.filename)}: {type(exc).__name__}: {str(exc)[:200]}")
                continue
            line = tally.add(info.filename, scanner.result(), finder.result())
            yield (json.dumps(line, ensure_ascii=False) + "\n").encode()


def on_manifest(logs: BlobContainer, reports: BlobContainer, blob_name: str, now: datetime) -> dict[str, Any]:
    """A node's manifest arrived (it is written last): collect the node."""
    parsed = layout.parse_log_blob(blob_name)
    if isinstance(parsed, layout.BadBlobName) or parsed.kind != layout.MANIFEST:
        return on_stray(logs, reports, blob_name)
    job_id, node_id, at = parsed.job_id, parsed.node_id, iso(now)
    record_name = layout.node_record_name(job_id, node_id)
    try:
        raw = logs.read(blob_name, MAX_MANIFEST_BYTES)
        if raw is None:
            log.warning("collect.vanished", extra={"blob": layout.safe_preview(blob_name)})
            return {"status": "vanished", "jobId": job_id, "nodeId": node_id}
        manifest = parse_manifest(raw, job_id, node_id)
    except (ValueError, ManifestInvalid) as exc:
        record = nodes.invalid_record(job_id, node_id, str(exc), at)
        reports.write_json(record_name, record)
        update_report(reports, job_id, now, lambda r: reports_model.merge_node(r, nodes.report_row(record)), logs)
        return {"status": "invalid", "jobId": job_id, "nodeId": node_id, "reason": str(exc)}

    existing = reports.read_json(record_name)
    known = reports.read_json(layout.report_name(job_id))
    refused = nodes.refusal(known, node_id, manifest.run_id, existing)
    if refused is not None:
        return _refuse(reports, job_id, node_id, manifest.run_id, refused, now, logs)
    if existing and existing.get("runId") == manifest.run_id and existing.get("status") == nodes.COLLECTED:
        record, status = existing, "already collected"  # a redelivery: only make sure the report has it
    else:
        wanted = _failed_on(known, node_id)
        record, status = _collect_node(logs, reports, manifest, now, wanted), "collected"
    excerpts, backtraces = record.get("excerpts") or {}, record.get("backtraces") or {}

    def merged(r: dict) -> dict:
        r = reports_model.fill_excerpts(reports_model.merge_node(r, nodes.report_row(record)), excerpts, node_id,
                                        backtraces)
        missing = _failed_on(r, node_id, without_excerpt=True)
        if missing:
            # The outcome landed while this node was being read: its failed tasks' lines come from its index,
            # in the same write, so no reader sees the collection complete without them.
            found = index_details(reports, job_id, node_id, missing)
            r = reports_model.fill_excerpts(r, found.excerpts, node_id, found.backtraces)
        return r

    report = update_report(reports, job_id, now, merged, logs)
    log.info("collect.node", extra={"jobId": job_id, "nodeId": node_id, "files": record.get("files"),
                                     "status": status, "collectionComplete": report["collectionComplete"]})
    return {"status": status, "jobId": job_id, "nodeId": node_id, "files": record.get("files"),
            "problems": record.get("problemCount"), "collectionComplete": report["collectionComplete"]}


def index_details(reports: BlobContainer, job_id: str, node_id: str, wanted: set[str]) -> nodes.TaskDetails:
    """The first error lines and backtraces of the wanted tasks, from one pass over the node's index."""
    return nodes.details_from_index((json.loads(raw) for raw in reports.lines(layout.index_name(job_id, node_id))),
                                    wanted)


def _failed_on(report: dict | None, node_id: str, without_excerpt: bool = False) -> set[str] | None:
    """The failed tasks the report lists as having run on the node (None before the outcome is in)."""
    tasks = (report or {}).get("tasks")
    if tasks is None:
        return None
    return {t["id"] for t in tasks.get("failed") or [] if t.get("nodeId") == node_id
            and not (without_excerpt and t.get("excerpt"))}


def _collect_node(logs: BlobContainer, reports: BlobContainer, manifest: Manifest, now: datetime,
                  wanted: set[str] | None = None) -> dict[str, Any]:
    job_id, node_id = manifest.job_id, manifest.node_id
    tally = nodes.NodeTally(job_id, node_id, manifest, wanted=frozenset(wanted) if wanted is not None else None)
    # One listing of the node's own prefix: sizes to check parts against, and anything not accounted for.
    sizes, accounted = {}, manifest.blobs()
    for item in logs.list(f"{job_id}/{node_id}/"):
        if item.name in accounted:
            sizes[item.name] = item.size
        else:
            tally.stray(item.name)  # counted, a few named: a node could write millions of them
    index = layout.index_name(job_id, node_id)
    lines = _scan_bundle(logs, manifest.bundle, sizes, tally) if manifest.bundle is not None else iter(())
    reports.write_stream(index, lines, "application/x-ndjson")
    for dump in manifest.crash_dumps:
        # A dump in parts has no single blob to trigger on: it is collected here, with its node.
        if len(dump.parts) > 1 and not reports.exists(layout.crash_record_name(job_id, dump.sha256)):
            missing = [p.blob for p in dump.parts if p.blob not in sizes]
            if missing:
                tally.problem(f"crash dump {dump.path}: part {layout.safe_preview(missing[0])} is missing")
                continue
            _collect_dump(logs, reports, job_id, [p.blob for p in dump.parts], compressed=True,
                          copy=_release_copy(dump.blob, node_id, dump.path), now=now)
    record = tally.record(iso(now))
    reports.write_json(layout.node_record_name(job_id, node_id), record)
    return record


def _release_copy(blob: str, node_id: str, path: str) -> dict[str, Any]:
    """A dump as the release task uploaded it (gzip'd, from a node)."""
    return {"blob": blob, "nodeId": node_id, "taskId": lognames.task_of(path), "path": path, "compressed": True}


# ----- a crash dump ------------------------------------------------------------------------------

class _Vanished(Exception):
    pass


def _dump_chunks(logs: BlobContainer, blobs: list[str], compressed: bool) -> Iterator[bytes]:
    def raw() -> Iterator[bytes]:
        for name in blobs:  # one part open at a time
            download = logs.open(name)
            if download is None:
                raise _Vanished(name)
            yield from download.chunks()

    chunks = _prefetched(raw())
    return gunzip(chunks) if compressed else chunks


def _collect_dump(logs: BlobContainer, reports: BlobContainer, job_id: str, blobs: list[str], compressed: bool,
                  copy: dict[str, Any], now: datetime) -> dict[str, Any]:
    scanner = CrashDumpScanner()
    try:
        for chunk in _dump_chunks(logs, blobs, compressed):
            scanner.feed(chunk)
    except _Vanished:
        log.warning("collect.vanished", extra={"blob": layout.safe_preview(blobs[0])})
        return {"status": "vanished"}
    except zlib.error as exc:
        copy = {**copy, "problem": f"not a complete gzip stream: {exc}"}
    summary = scanner.result().to_dict()
    name = layout.crash_record_name(job_id, summary["sha256"])
    record = reports_model.crash_record(job_id, summary, copy, iso(now))
    if not reports.create_json(name, record, metadata=reports_model.crash_metadata(record)):
        record = reports.rewrite_json(name, lambda current: reports_model.add_copy(current or record, copy),
                                      metadata=reports_model.crash_metadata)
        ours = record["copies"][0].get("blob") == copy["blob"]
        if record.get("counted") or not ours:
            # Another copy of a dump already counted (or being counted by the copy that recorded it first).
            return {"status": "duplicate", "sha256": summary["sha256"], "fingerprint": summary["fingerprint"]}
    update_report(reports, job_id, now, lambda r: reports_model.merge_crash(r, record), logs)
    reports.rewrite_json(name, lambda current: {**(current or record), "counted": True},
                         metadata=reports_model.crash_metadata)
    log.info("collect.crashdump", extra={"jobId": job_id, "sha256": summary["sha256"], "format": summary["format"]})
    return {"status": "counted", "sha256": summary["sha256"], "fingerprint": summary["fingerprint"],
            "format": summary["format"], "signalName": summary["signalName"]}


def _dump_refusal(reports: BlobContainer, blob: layout.LogBlob) -> nodes.Refusal | None:
    report = reports.read_json(layout.report_name(blob.job_id))
    if blob.from_failing_task:
        collection = (report or {}).get("collection") or {}
        failed = {t["id"] for t in ((report or {}).get("tasks") or {}).get("failed") or []}
        if collection.get("closedAt") and blob.task_id not in failed:
            return nodes.Refusal("after_collection_closed", "a task's own upload arrived after collection closed "
                                                            "and the task is not listed as failed")
        return None
    node = reports.read_json(layout.node_record_name(blob.job_id, blob.node_id))
    # A dump of the run already collected is that run's, whatever order the events came in.
    if node and node.get("runId") == blob.run_id:
        return None
    return nodes.refusal(report, blob.node_id, blob.run_id or "", None)


def on_crash_dump(logs: BlobContainer, reports: BlobContainer, blob_name: str, now: datetime) -> dict[str, Any]:
    parsed = layout.parse_log_blob(blob_name)
    if isinstance(parsed, layout.BadBlobName) or parsed.kind != layout.CRASH_DUMP:
        return on_stray(logs, reports, blob_name)
    if parsed.part is not None:
        return {"status": "left to the node's collection (a dump in parts)"}
    refused = _dump_refusal(reports, parsed)
    if refused is not None:
        return _refuse(reports, parsed.job_id, parsed.node_id, parsed.run_id, refused, now, logs)
    compressed = not parsed.from_failing_task
    copy = {"blob": blob_name, "nodeId": None if parsed.from_failing_task else parsed.node_id,
            "taskId": parsed.task_id or lognames.task_of(layout.dump_path(parsed)), "path": layout.dump_path(parsed),
            "compressed": compressed}
    result = _collect_dump(logs, reports, parsed.job_id, [blob_name], compressed, copy, now)
    return {**result, "jobId": parsed.job_id, "nodeId": parsed.node_id}
