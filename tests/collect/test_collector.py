"""The collector against Azurite: one collection per node from its bundle, crash dumps on their own and
counted once, hostile input recorded rather than trusted, bounded memory."""

import gzip
import hashlib
import io
import json
import tracemalloc
import zipfile
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest
from azure.storage.blob import BlobClient

from shared.flows import files
from shared.flows.collect import on_crash_dump, on_manifest, on_stray
from shared.node import lognames
from shared.pure import blob_layout as layout
from shared.pure import report as rp
from shared.pure.outcome import outcome_document
from shared.pure.report_page import render_report_page
from shared.pure.task_summary import summarize
from shared.pure.values import Job, NodeRuns, TaskCounts, TaskResult, TaskRun
from tests.unit.dumps import elf_core, minidump

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
RUN = "20261201T120000Z-0123abcd"


def zip_of(entries: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as bundle:
        for name, data in entries.items():
            bundle.writestr(zipfile.ZipInfo(name), data, zipfile.ZIP_DEFLATED)
    return out.getvalue()


def put_node(logs, job, node, entries: dict[str, bytes], dumps: dict[str, bytes] | None = None, run=RUN,
             part_bytes=None, bundle: bytes | None = None, write_dumps=True, **manifest_extra) -> dict:
    """What the release-task uploader writes for a node: the bundle (in parts if asked), each dump gzip'd,
    then the manifest."""
    data = zip_of(entries) if bundle is None else bundle
    base = lognames.bundle_blob(job, node, run)
    size = part_bytes or len(data) or 1
    chunks = [data[i:i + size] for i in range(0, len(data), size)] or [b""]
    parts = []
    for i, chunk in enumerate(chunks):
        name = lognames.part_blob(base, i, len(chunks))
        logs.write(name, chunk)
        parts.append({"blob": name, "size": len(chunk)})
    dump_records = []
    for path, raw in (dumps or {}).items():
        blob = lognames.crash_dump_blob(job, node, run, path)
        packed = gzip.compress(raw, mtime=0)
        if write_dumps:
            logs.write(blob, packed)
        dump_records.append({"path": path, "blob": blob, "parts": [{"blob": blob, "size": len(packed)}],
                             "size": len(raw), "sha256": hashlib.sha256(raw).hexdigest(), "compressedSize": len(packed)})
    manifest = {"schema": lognames.MANIFEST_SCHEMA, "jobId": job, "nodeId": node, "runId": run,
                "bundle": {"blob": base, "parts": parts, "size": len(data), "sha256": hashlib.sha256(data).hexdigest(),
                           "entries": len(entries)},
                "crashDumps": dump_records, "failed": [], "failedCount": 0, "renamed": [], "renamedCount": 0,
                **manifest_extra}
    logs.write(lognames.manifest_blob(job, node), json.dumps(manifest).encode())
    return manifest


def collect(logs, reports, job, node):
    return on_manifest(logs, reports, lognames.manifest_blob(job, node), NOW)


def index_of(reports, job, node):
    return [json.loads(line) for line in reports.lines(layout.index_name(job, node))]


def record_outcome(reports, job_id, nodes, tasks=()):
    """What the watchdog's outcome step merges (shared.flows.outcome), without a Batch account."""
    ok = TaskRun(state="completed", exit_code=0, result="success")
    doc = outcome_document(Job(id=job_id, state="completed", end_time=NOW), TaskCounts(), summarize(tasks).to_dict(),
                           [NodeRuns(n, ok, ok) for n in nodes], [], NOW)
    return reports.rewrite_json(layout.report_name(job_id), lambda cur: rp.finish(
        rp.merge_outcome(cur or rp.empty_report(job_id), doc), NOW.isoformat()))


LOG = b"starting\nworking\nERROR: disk full\nTraceback (most recent call last)\ndone\n"


def test_a_node_is_collected_from_its_bundle_in_one_pass(containers):
    logs, reports = containers
    entries = {"job-1/t1/stdout.txt": LOG, "job-1/t1/stderr.txt": b"", "job-1/jobrelease/stdout.txt": b"bye\n"}
    put_node(logs, "j1", "n1", entries)
    result = collect(logs, reports, "j1", "n1")
    assert (result["status"], result["files"], result["problems"]) == ("collected", 3, 0)
    index = {line["path"]: line for line in index_of(reports, "j1", "n1")}
    assert set(index) == set(entries)
    line = index["job-1/t1/stdout.txt"]
    assert (line["size"], line["sha256"], line["lines"], line["errorLines"]) == (
        len(LOG), hashlib.sha256(LOG).hexdigest(), 5, 2)
    assert line["firstErrors"] == ["ERROR: disk full", "Traceback (most recent call last)"]
    assert index["job-1/t1/stderr.txt"]["size"] == 0, "a zero-byte file is indexed too"
    node = reports.read_json(layout.node_record_name("j1", "n1"))
    assert node["excerpts"] == {"t1": ["ERROR: disk full", "Traceback (most recent call last)"]}
    report = reports.read_json(layout.report_name("j1"))
    assert report["totals"]["files"] == 3 and report["collectionComplete"] is False, "waits for the outcome"
    assert collect(logs, reports, "j1", "n1")["status"] == "already collected"


HOSTILE_ENTRIES = ["../../../etc/passwd", "/etc/shadow", "job-1/t1/evil\u202etxt.exe", "job-1/t1/a\x07bell",
                   "job-1/t1/" + "x" * 300, "C:\\Windows\\system32", "job-1//double", "job-1/t1/e\u0301"]


def test_hostile_names_inside_a_bundle_never_void_the_node(containers):
    logs, reports = containers
    entries = {name: f"payload {i}\n".encode() for i, name in enumerate(HOSTILE_ENTRIES)}
    entries["job-1/t2/stdout.txt"] = b"fine\n"
    entries["job-1/t2/empty.log"] = b""
    put_node(logs, "j2", "n1", entries)
    result = collect(logs, reports, "j2", "n1")
    assert (result["status"], result["files"], result["problems"]) == ("collected", len(entries), 0)
    index = index_of(reports, "j2", "n1")
    renamed = [line for line in index if "original" in line]
    assert len(renamed) == len(HOSTILE_ENTRIES)
    assert all(line["path"].startswith("_renamed/") and lognames.problem(line["path"]) is None for line in renamed)
    assert all(line["original"].isascii() and line["original"].isprintable() for line in renamed)
    assert {"job-1/t2/stdout.txt", "job-1/t2/empty.log"} <= {line["path"] for line in index}
    assert reports.read_json(layout.node_record_name("j2", "n1"))["renamedCount"] == len(HOSTILE_ENTRIES)
    # A renamed file can still be fetched out of the bundle by its safe name.
    opened = files.open_file(_store(logs, reports), "j2", "n1", renamed[0]["path"])
    assert opened.stream.read() in {f"payload {i}\n".encode() for i in range(len(HOSTILE_ENTRIES))}


def test_a_damaged_entry_is_reported_and_the_rest_collected(containers):
    logs, reports = containers
    good = zip_of({"a.log": b"A" * 10_000, "b.log": b"B" * 10_000, "c.log": b"C\n"})
    data = bytearray(good)
    start = data.index(b"b.log") + len("b.log")  # b.log's compressed bytes follow its local header
    data[start + 5:start + 15] = b"\xff" * 10
    put_node(logs, "j3", "n1", {"a.log": b"", "b.log": b"", "c.log": b""}, bundle=bytes(data))
    result = collect(logs, reports, "j3", "n1")
    node = reports.read_json(layout.node_record_name("j3", "n1"))
    assert (result["status"], node["files"], node["problemCount"]) == ("collected", 2, 1)
    assert node["problems"][0].startswith("b.log: ")
    assert [line["path"] for line in index_of(reports, "j3", "n1")] == ["a.log", "c.log"]


def test_a_bundle_in_parts_is_read_as_one(containers):
    logs, reports = containers
    entries = {f"job-1/t{i}/stdout.txt": (f"line {i}\n" * 5000).encode() for i in range(20)}
    manifest = put_node(logs, "j4", "n1", entries, part_bytes=1000)
    assert len(manifest["bundle"]["parts"]) > 3
    assert collect(logs, reports, "j4", "n1")["files"] == 20
    assert {line["lines"] for line in index_of(reports, "j4", "n1")} == {5000}


def test_one_file_is_fetched_from_a_bundle_by_range(containers):
    logs, reports = containers
    import os

    entries = {f"job-1/t{i}/stdout.txt": os.urandom(200_000) for i in range(40)}  # ~8 MB, incompressible
    manifest = put_node(logs, "j5", "n1", entries)
    collect(logs, reports, "j5", "n1")
    opened = files.open_file(_store(logs, reports), "j5", "n1", "job-1/t17/stdout.txt")
    assert opened.stream.read() == entries["job-1/t17/stdout.txt"]
    fetched = opened.reader.requests * files.FETCH_WINDOW
    assert fetched < manifest["bundle"]["size"] / 4, f"{opened.reader.requests} ranged reads for one file"
    with pytest.raises(files.NotCollected):
        files.open_file(_store(logs, reports), "j5", "n1", "job-1/nope/stdout.txt")


def test_a_long_read_out_of_a_bundle_takes_growing_windows(containers):
    logs, reports = containers
    import os

    big = os.urandom(8 * 1024 * 1024)
    put_node(logs, "j5b", "n1", {"job-1/t1/stdout.txt": big, "job-1/t2/stdout.txt": b"small\n"})
    collect(logs, reports, "j5b", "n1")
    opened = files.open_file(_store(logs, reports), "j5b", "n1", "job-1/t1/stdout.txt")
    assert opened.stream.read() == big
    # Three small reads at the end (the end record, the zip64 locator, the central directory), then the
    # entry from its header in windows doubling from 256 KiB to MAX_FETCH_WINDOW: 7 GETs for its 8 MiB,
    # where windows that stayed at 256 KiB would take 33.
    assert opened.reader.requests == 3 + 7


def test_a_bad_manifest_is_recorded_on_the_node(containers):
    logs, reports = containers
    logs.write("j6/n2/manifest.json", b"{not json")
    assert collect(logs, reports, "j6", "n2")["status"] == "invalid"
    node = reports.read_json(layout.node_record_name("j6", "n2"))
    assert node["status"] == "invalid" and "not JSON" in node["manifestError"]
    report = reports.read_json(layout.report_name("j6"))
    assert report["nodes"][0]["manifestError"] == node["manifestError"]


def test_a_crash_dump_is_counted_once_whoever_uploaded_it(containers):
    logs, reports = containers
    dump = elf_core(exe="solver", signal=11)
    # The failing task's own upload (Batch outputFiles, raw) and the release task's (gzip) of the same dump.
    logs.write("j7/_tasks/crashdumps/t3/core.99", dump)
    put_node(logs, "j7", "n1", {"job-1/t3/stderr.txt": b"Segmentation fault\n"}, dumps={"job-1/t3/wd/core.99": dump})
    first = on_crash_dump(logs, reports, "j7/_tasks/crashdumps/t3/core.99", NOW)
    second = on_crash_dump(logs, reports, lognames.crash_dump_blob("j7", "n1", RUN, "job-1/t3/wd/core.99"), NOW)
    assert (first["status"], second["status"]) == ("counted", "duplicate")
    assert on_crash_dump(logs, reports, "j7/_tasks/crashdumps/t3/core.99", NOW)["status"] == "duplicate", "redelivery"
    collect(logs, reports, "j7", "n1")
    report = reports.read_json(layout.report_name("j7"))
    (group,) = report["crashGroups"]
    assert (group["count"], group["executable"], group["signalName"], group["tasks"]) == (1, "solver", "SIGSEGV", ["t3"])
    record = reports.read_json(layout.crash_record_name("j7", hashlib.sha256(dump).hexdigest()))
    assert len(record["copies"]) == 2 and record["counted"] is True
    assert "_tasks" not in {n["nodeId"] for n in report["nodes"]}, "_tasks is not a node"


def test_different_dumps_of_one_crash_group_together(containers):
    logs, reports = containers
    put_node(logs, "j8", "n1", {}, dumps={"job-1/t1/wd/core.1": elf_core(), "job-1/t2/wd/core.2": elf_core() + b"\0" * 100,
                                           "job-1/t3/wd/app.dmp": minidump()})
    for path in ("job-1/t1/wd/core.1", "job-1/t2/wd/core.2", "job-1/t3/wd/app.dmp"):
        assert on_crash_dump(logs, reports, lognames.crash_dump_blob("j8", "n1", RUN, path), NOW)["status"] == "counted"
    groups = {(g["format"], g["count"]) for g in reports.read_json(layout.report_name("j8"))["crashGroups"]}
    assert groups == {("elf-core", 2), ("minidump", 1)}


def test_a_crash_dump_in_parts_is_collected_with_its_node(containers):
    logs, reports = containers
    dump = elf_core(exe="big") + bytes(range(256)) * 4096
    packed = gzip.compress(dump, mtime=0)
    blob = lognames.crash_dump_blob("j9", "n1", RUN, "job-1/t1/wd/core.7")
    third = len(packed) // 3 + 1
    parts = []
    for i in range(3):
        logs.write(lognames.part_blob(blob, i, 3), packed[i * third:(i + 1) * third])
        parts.append({"blob": lognames.part_blob(blob, i, 3), "size": len(packed[i * third:(i + 1) * third])})
    put_node(logs, "j9", "n1", {"a.log": b"x\n"}, crashDumps=[
        {"path": "job-1/t1/wd/core.7", "blob": blob, "parts": parts, "size": len(dump),
         "sha256": hashlib.sha256(dump).hexdigest(), "compressedSize": len(packed)}])
    assert on_crash_dump(logs, reports, parts[0]["blob"], NOW)["status"].startswith("left to the node")
    collect(logs, reports, "j9", "n1")
    (group,) = reports.read_json(layout.report_name("j9"))["crashGroups"]
    assert (group["count"], group["executable"]) == (1, "big")


def test_uploads_from_a_node_that_did_not_run_the_job_or_after_close_are_refused(containers):
    logs, reports = containers
    put_node(logs, "j10", "n1", {"a.log": b"ok\n"})
    collect(logs, reports, "j10", "n1")
    report = record_outcome(reports, "j10", ["n1"])
    assert report["collectionComplete"] is True and report["collection"]["closedAt"]
    # Another job's node (same pool, same SAS) writes under this job.
    put_node(logs, "j10", "intruder", {"a.log": b"forged\n"}, dumps={"job-1/t1/wd/core": elf_core()})
    refused = collect(logs, reports, "j10", "intruder")
    dump = on_crash_dump(logs, reports, lognames.crash_dump_blob("j10", "intruder", RUN, "job-1/t1/wd/core"), NOW)
    # The node that did run it, with a second run after collection closed.
    put_node(logs, "j10", "n1", {"a.log": b"late\n"}, run="20261201T130000Z-00000000")
    late = collect(logs, reports, "j10", "n1")
    assert (refused["rule"], dump["rule"], late["rule"]) == (
        "node_did_not_run_job", "node_did_not_run_job", "after_collection_closed")
    report = reports.read_json(layout.report_name("j10"))
    # One refusal per node run: the intruder's manifest and its dump are one, the late run another.
    assert report["refusedCount"] == 2 and report["totals"]["files"] == 1 and report["crashGroups"] == []
    assert not reports.exists(layout.index_name("j10", "intruder"))
    kept = [b.name for b in reports.list("j10/refused/")]
    assert len(kept) == 2, "one record per refused node run"


def test_a_forged_upload_before_the_outcome_is_dropped_when_batch_says_who_ran_the_job(containers):
    """The usual order: release tasks (and a forger) upload before the watchdog records the outcome."""
    logs, reports = containers
    put_node(logs, "j15", "n1", {"job-1/t1/stderr.txt": b"ERROR real\n"}, dumps={"job-1/t1/wd/core": elf_core()})
    put_node(logs, "j15", "forger", {"job-1/t1/stderr.txt": b"ERROR forged\n"},
             dumps={"job-1/t1/wd/core": elf_core(exe="forged")})
    for node in ("n1", "forger"):
        on_crash_dump(logs, reports, lognames.crash_dump_blob("j15", node, RUN, "job-1/t1/wd/core"), NOW)
        collect(logs, reports, "j15", node)
    assert len(reports.read_json(layout.report_name("j15"))["crashGroups"]) == 2, "both counted, provisionally"
    tasks = [TaskResult("t1", "completed", "n1", 1, "failure")]
    report = record_outcome(reports, "j15", ["n1"], tasks)
    from shared.flows.collect import close

    report = close(logs, reports, "j15", report, NOW)  # what the closing write does in the flow
    rows = {n["nodeId"]: n["status"] for n in report["nodes"]}
    assert rows == {"n1": "collected", "forger": "refused"} and report["totals"]["files"] == 1
    (group,) = report["crashGroups"]
    assert (group["count"], group["executable"]) == (1, "myapp"), "the forger's dump is not the job's"


def test_a_crash_dump_delivered_twice_at_once_is_counted_once_at_close(containers):
    logs, reports = containers
    put_node(logs, "j16", "n1", {"a.log": b"x\n"}, dumps={"job-1/t1/wd/core": elf_core()})
    name = lognames.crash_dump_blob("j16", "n1", RUN, "job-1/t1/wd/core")
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda _: on_crash_dump(logs, reports, name, NOW), range(4)))
    collect(logs, reports, "j16", "n1")
    from shared.flows.collect import update_report as write  # the closing write goes through it

    report = write(reports, "j16", NOW, lambda r: rp.merge_outcome(r, outcome_document(
        Job(id="j16", state="completed", end_time=NOW), TaskCounts(), summarize([]).to_dict(),
        [NodeRuns("n1", TaskRun(state="completed", exit_code=0, result="success"))], [], NOW)), logs)
    assert report["collectionComplete"] is True
    (group,) = report["crashGroups"]
    assert group["count"] == 1


def test_names_outside_the_layout_get_a_record(containers):
    logs, reports = containers
    for name in ["outside.txt", "bad id!/n1/manifest.json", "j11/n1/notes/readme.txt", "j11/n1/logs/x.txt"]:
        logs.write(name, b"payload")
        result = on_stray(logs, reports, name)
        assert result["status"] == "rejected"
        record = reports.read_json(result["record"])
        assert record["size"] == 7 and record["rule"] == result["rule"]
    assert on_stray(logs, reports, lognames.manifest_blob("j11", "n1")) == {"status": "in layout", "kind": "manifest"}


def test_unexpected_blobs_under_a_node_are_recorded(containers):
    logs, reports = containers
    put_node(logs, "j12", "n1", {"a.log": b"x\n"})
    logs.write("j12/n1/bundles/20260101T000000Z-deadbeef.zip", b"not ours")
    collect(logs, reports, "j12", "n1")
    node = reports.read_json(layout.node_record_name("j12", "n1"))
    assert node["unexpectedBlobs"] == ["j12/n1/bundles/20260101T000000Z-deadbeef.zip"]


def test_nodes_collected_concurrently_with_the_outcome_leave_a_complete_report(containers):
    logs, reports = containers
    nodes = [f"n{i}" for i in range(8)]
    for node in nodes:
        put_node(logs, "j13", node, {f"job-1/{node}-t{k}/stdout.txt": b"ok\n" for k in range(25)})
    tasks = [TaskResult(f"{n}-t{k}", "completed", n, 0, "success") for n in nodes for k in range(25)]
    with ThreadPoolExecutor(max_workers=9) as pool:
        jobs = [pool.submit(collect, logs, reports, "j13", n) for n in nodes]
        jobs.append(pool.submit(record_outcome, reports, "j13", nodes, tasks))
        for future in jobs:
            future.result()
    report = reports.read_json(layout.report_name("j13"))
    assert report["collectionComplete"] is True
    assert (report["totals"]["files"], report["totals"]["nodesCollected"]) == (200, 8)
    assert {n["nodeId"]: n["tasksRun"] for n in report["nodes"]} == dict.fromkeys(nodes, 25)


FAULT = b"""Fatal Python error: Segmentation fault

Current thread 0x00007f1234567740 (most recent call first):
  File "/app/native.py", line 8 in crash
  File "/app/native.py", line 12 in <module>
"""
TRACEBACK = b"""Traceback (most recent call last):
  File "/app/solve.py", line 30, in <module>
    main()
  File "/app/solve.py", line 12, in compute
    return 1 / n
ZeroDivisionError: division by zero
"""
PANIC = b"thread 'main' panicked at src/main.rs:10:5:\nattempt to divide by zero\n"


def test_where_each_failed_task_crashed_reaches_the_report_and_its_page(containers):
    """The outcome first (the failed tasks are known while the node is read): their backtraces come from the
    node's own pass over its bundle; the dump's group gets its task's when collection closes."""
    logs, reports = containers
    tasks = [TaskResult("t1", "completed", "n1", 139, "failure"), TaskResult("t2", "completed", "n1", 101, "failure"),
             TaskResult("t3", "completed", "n1", 1, "failure"), TaskResult("t4", "completed", "n1", 0, "success")]
    record_outcome(reports, "j20", ["n1"], tasks)
    put_node(logs, "j20", "n1", {"job-1/t1/stdout.txt": b"loading\n", "job-1/t1/stderr.txt": FAULT,
                                 "job-1/t2/stderr.txt": PANIC, "job-1/t3/stdout.txt": b"starting\n" + TRACEBACK,
                                 "job-1/t4/stdout.txt": b"ok\n"},
             dumps={"job-1/t1/wd/core.1": elf_core(exe="python3")})
    collect(logs, reports, "j20", "n1")
    report = reports.read_json(layout.report_name("j20"))
    assert report["collectionComplete"] is True
    assert {t["id"]: t.get("backtrace") for t in report["tasks"]["failed"]} == {
        "t1": {"kind": "Segmentation fault", "frame": "crash (/app/native.py:8)"},
        "t2": {"kind": "panic", "frame": "src/main.rs:10"},
        "t3": {"kind": "ZeroDivisionError", "frame": "compute (/app/solve.py:12)"}}
    (group,) = report["crashGroups"]
    assert (group["count"], group["location"], group["backtrace"]) == (1, "myapp+0x123", {
        "kind": "Segmentation fault", "frame": "crash (/app/native.py:8)", "taskId": "t1", "nodeId": "n1",
        "log": "stderr"})
    index = {line["path"]: line.get("backtrace") for line in index_of(reports, "j20", "n1")}
    assert index["job-1/t2/stderr.txt"] == {"format": "rust", "kind": "panic", "frame": "src/main.rs:10"}
    assert index["job-1/t1/stdout.txt"] is None and index["job-1/t4/stdout.txt"] is None
    page = render_report_page(report)
    for cell in ('<td><code>src/main.rs:10</code> <span class="muted">panic</span></td>',
                 '<td><code>compute (/app/solve.py:12)</code> <span class="muted">ZeroDivisionError</span></td>',
                 '<code>crash (/app/native.py:8)</code> <span class="muted">Segmentation fault</span><br>'
                 '<span class="muted">printed in <a href="j20/files/n1/job-1/t1/stderr.txt">stderr</a> of '
                 '<code>t1</code></span><br>dump: <code>myapp+0x123</code>'):
        assert cell in page, cell
    assert "3 failed tasks printed a backtrace: see Crashes in task logs below" in page


def test_a_dump_only_its_failing_task_uploaded_gets_the_backtrace_from_the_failed_tasks(containers):
    """No node record lists the dump (the release task did not upload it): the group takes the backtrace the
    failed-task list has for the dump's task."""
    logs, reports = containers
    record_outcome(reports, "j21", ["n1"], [TaskResult("t5", "completed", "n1", 139, "failure")])
    logs.write("j21/_tasks/crashdumps/t5/core.5", elf_core(exe="solver"))
    assert on_crash_dump(logs, reports, "j21/_tasks/crashdumps/t5/core.5", NOW)["status"] == "counted"
    gdb = b"Program terminated with signal SIGSEGV, Segmentation fault.\n#0  0x000055555555513d in step (n=0) at solver.c:42\n"
    put_node(logs, "j21", "n1", {"job-1/t5/stderr.txt": gdb})
    collect(logs, reports, "j21", "n1")
    report = reports.read_json(layout.report_name("j21"))
    assert report["collectionComplete"] is True
    assert report["tasks"]["failed"][0]["backtrace"] == {"kind": "SIGSEGV", "frame": "step (solver.c:42)"}
    (group,) = report["crashGroups"]
    assert (group["count"], group["backtrace"]) == (1, {"kind": "SIGSEGV", "frame": "step (solver.c:42)",
                                                        "taskId": "t5", "nodeId": "n1"})


def _store(logs, reports):
    class _Store:  # what shared.flows.files reads: the two containers and report()
        pass

    store = _Store()
    store.logs, store.reports = logs, reports
    store.report = lambda job_id: reports.read_json(layout.report_name(job_id))
    return store


GIB = 1024 * 1024 * 1024
# The collector holds a bounded number of chunks (the one being scanned, PREFETCH_DEPTH queued, the SDK's
# own buffers, the scanner's 4 MiB header window, one 4 MiB step of decompression): about 50 MiB measured,
# whatever the dump's size. Anything near the dump's size would mean it reads the blob whole.
PEAK_LIMIT = 80 * 1024 * 1024


def _stage_dump(connection_string, container, name, head, filler, blocks):
    blob = BlobClient.from_connection_string(connection_string, container.name, name)
    blob.stage_block("aGVhZA==", head)
    blob.stage_block("ZmlsbA==", filler)
    blob.commit_block_list(["aGVhZA=="] + ["ZmlsbA=="] * (blocks - 1))


@pytest.mark.parametrize("compressed", [False, True], ids=["raw from a failing task", "gzip from the release task"])
def test_one_gib_crash_dump_is_streamed_in_bounded_memory(containers, azurite, compressed):
    logs, reports = containers
    block = 4 * 1024 * 1024
    head = elf_core(exe="bigapp", signal=7)
    head += b"\xab" * (block - len(head))
    filler = bytes(range(256)) * (block // 256)
    digest = hashlib.sha256(head)
    for _ in range(GIB // block - 1):
        digest.update(filler)
    if compressed:
        # A gzip stream of the same 1 GiB, built from two compressed pieces (members concatenate).
        name = lognames.crash_dump_blob("j14", "n1", RUN, "job-1/t1/wd/core.big")
        head_gz, filler_gz = gzip.compress(head, mtime=0), gzip.compress(filler * 16, mtime=0)
        pieces = [head_gz] + [filler_gz] * ((GIB // block - 1) // 16)
        remainder = (GIB // block - 1) % 16
        pieces += [gzip.compress(filler * remainder, mtime=0)] if remainder else []
        logs.write(name, b"".join(pieces))
    else:
        name = "j14/_tasks/crashdumps/t1/core.big"
        _stage_dump(azurite.connection_string, logs, name, head, filler, GIB // block)
    tracemalloc.start()
    try:
        result = on_crash_dump(logs, reports, name, NOW)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result["status"] == "counted" and result["sha256"] == digest.hexdigest()
    record = reports.read_json(layout.crash_record_name("j14", digest.hexdigest()))
    assert (record["size"], record["executable"], record["signalName"]) == (GIB, "bigapp", "SIGBUS")
    assert peak < PEAK_LIMIT, f"collecting a 1 GiB dump peaked at {peak / 2**20:.0f} MiB of Python memory"
