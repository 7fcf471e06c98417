import contextlib
import hashlib
import json
import tracemalloc

import pytest
from azure.core.exceptions import HttpResponseError

from shared.flows.collect import collect_blob, rebuild_report
from shared.pure import blob_layout as bl
from tests.unit.dumps import elf_core, minidump

LOG = b"starting\nworking\nERROR: disk full\nTraceback (most recent call last)\ndone\n"


def put(container, name, data):
    container.write(name, data)
    return hashlib.sha256(data).hexdigest()


def read_json(container, name):
    return json.loads(container.read(name, limit=2**40))


def manifest(job, node, files):
    return json.dumps({"schema": "job-logs-manifest.v1", "jobId": job, "nodeId": node, "failed": [],
                       "files": [{"path": p, "size": len(d), "sha256": hashlib.sha256(d).hexdigest()}
                                 for p, d in files]}).encode()


def test_log_is_indexed_and_report_written(containers):
    logs, reports = containers
    sha = put(logs, "j1/n1/logs/job-1/t1/stdout.txt", LOG)
    result = collect_blob(logs, reports, "j1/n1/logs/job-1/t1/stdout.txt")
    assert result["status"] == "indexed"
    record = read_json(reports, "j1/files/n1/logs/job-1/t1/stdout.txt.json")
    assert (record["size"], record["sha256"], record["log"]["lines"], record["log"]["errorLines"]) == (
        len(LOG), sha, 5, 2)
    assert record["log"]["lastLines"][-1] == "done"
    # A plain log before its node's manifest does not rebuild the report (cost stays linear).
    assert not reports.exists("j1/report.json")
    collect_blob(logs, reports, "j1/n1/logs/job-1/t1/stdout.txt", always_rebuild=True)
    report = read_json(reports, "j1/report.json")
    assert report["totals"]["files"] == 1 and report["collectionComplete"] is False


def test_crash_dumps_are_fingerprinted(containers):
    logs, reports = containers
    put(logs, "j2/n1/crashdumps/core.1", elf_core())
    put(logs, "j2/n2/crashdumps/core.7", elf_core() + b"\0" * 100)
    put(logs, "j2/n2/crashdumps/app.dmp", minidump())
    for name in ("j2/n1/crashdumps/core.1", "j2/n2/crashdumps/core.7", "j2/n2/crashdumps/app.dmp"):
        collect_blob(logs, reports, name)
    record = read_json(reports, "j2/files/n1/crashdumps/core.1.json")
    assert record["crashDump"]["format"] == "elf-core" and record["crashDump"]["signalName"] == "SIGSEGV"
    report = read_json(reports, "j2/report.json")
    groups = {(g["format"], g["count"]) for g in report["crashGroups"]}
    assert groups == {("elf-core", 2), ("minidump", 1)}


def test_manifest_before_and_after_files(containers):
    logs, reports = containers
    files = [("logs/a.log", b"a\n"), ("logs/empty.log", b""), ("crashdumps/core", elf_core())]
    put(logs, "j3/n1/manifest.json", manifest("j3", "n1", files))
    # Manifest first: the node is not collected yet.
    assert collect_blob(logs, reports, "j3/n1/manifest.json")["nodeCollected"] is False
    node = read_json(reports, "j3/nodes/n1.json")
    assert sorted(node["missing"]) == ["crashdumps/core", "logs/a.log", "logs/empty.log"]
    results = []
    for path, data in files:
        put(logs, f"j3/n1/{path}", data)
        results.append(collect_blob(logs, reports, f"j3/n1/{path}",
                                    node_statuses=lambda job: [{"nodeId": "n1", "prepExitCode": 0,
                                                                "releaseExitCode": 0, "tasks": ["t1"]}]))
    assert [r["nodeCollected"] for r in results] == [False, False, True]
    assert results[-1]["collectionComplete"] is True
    report = read_json(reports, "j3/report.json")
    assert report["nodes"][0]["collected"] and report["nodes"][0]["tasks"] == ["t1"]
    empty = read_json(reports, "j3/files/n1/logs/empty.log.json")
    assert empty["size"] == 0 and empty["note"] == "zero-byte file"


def test_mismatch_and_bad_manifest(containers):
    logs, reports = containers
    put(logs, "j4/n1/logs/a.log", b"changed\n")
    collect_blob(logs, reports, "j4/n1/logs/a.log")
    put(logs, "j4/n1/manifest.json", manifest("j4", "n1", [("logs/a.log", b"original\n")]))
    assert collect_blob(logs, reports, "j4/n1/manifest.json")["nodeCollected"] is False
    assert read_json(reports, "j4/nodes/n1.json")["mismatched"][0]["path"] == "logs/a.log"
    put(logs, "j4/n2/manifest.json", b"{not json")
    assert collect_blob(logs, reports, "j4/n2/manifest.json")["nodeCollected"] is False
    assert "not JSON" in read_json(reports, "j4/nodes/n2.json")["manifestError"]


HOSTILE = [
    "j5/n1/logs/../../../etc/passwd",
    "j5/n1/logs/evil\u202etxt.exe",
    "j5/n1/logs/a\u0007bell",
    "j5/n1/notes/readme.txt",
    "outside.txt",
    "j5/n1/logs/" + "x" * 250 + "/" + "y" * 250 + "/" + "z" * 250 + "/" + "w" * 250,
    "bad id!/n1/logs/x",
]


@pytest.mark.parametrize("name", HOSTILE, ids=[repr(h)[:30] for h in HOSTILE])
def test_hostile_names_get_a_record(containers, name):
    logs, reports = containers
    # Some names the service itself refuses; the collector must cope either way.
    with contextlib.suppress(HttpResponseError, ValueError):
        put(logs, name, b"payload")
    result = collect_blob(logs, reports, name)
    assert result["status"] == "rejected"
    record = read_json(reports, result["record"])
    assert record["rule"] == result["rule"] and record["name"].isascii()
    assert collect_blob(logs, reports, name) == result  # idempotent


def test_vanished_blob_is_reported(containers):
    logs, reports = containers
    assert collect_blob(logs, reports, "j6/n1/logs/gone.log")["status"] == "vanished"


def test_rerun_is_idempotent(containers):
    logs, reports = containers
    put(logs, "j7/n1/logs/a.log", LOG)
    first = collect_blob(logs, reports, "j7/n1/logs/a.log")
    record = reports.read("j7/files/n1/logs/a.log.json", limit=2**40)
    second = collect_blob(logs, reports, "j7/n1/logs/a.log")
    assert first == second
    assert reports.read("j7/files/n1/logs/a.log.json", limit=2**40) == record
    assert len(list(reports.list("j7/"))) == 1  # the record, no duplicates


def test_outcome_is_included_on_rebuild(containers):
    logs, reports = containers
    reports.write(bl.outcome_name("j8"), json.dumps({"terminateReason": "AllTasksComplete"}).encode())
    report = rebuild_report(logs, reports, "j8")
    assert report["outcome"] == {"terminateReason": "AllTasksComplete"}


def upload_big_crash_dump(connection_string, container, name, blocks=256, block_size=4 * 1024 * 1024):
    """Stage one header block and one filler block, commit the filler many times: 1 GiB, 8 MiB sent."""
    from azure.storage.blob import BlobClient

    head = elf_core(exe="bigapp", signal=7)
    head += b"\xab" * (block_size - len(head))
    filler = bytes(range(256)) * (block_size // 256)
    blob = BlobClient.from_connection_string(connection_string, container.name, name)
    blob.stage_block("aGVhZA==", head)
    blob.stage_block("ZmlsbA==", filler)
    blob.commit_block_list(["aGVhZA=="] + ["ZmlsbA=="] * (blocks - 1))
    digest = hashlib.sha256(head)
    for _ in range(blocks - 1):
        digest.update(filler)
    return blocks * block_size, digest.hexdigest()


# The collector holds a bounded number of 4 MiB chunks (the one being scanned, PREFETCH_DEPTH queued, the
# SDK's own buffers, the scanner's 4 MiB header window): about 48 MiB measured, whatever the dump's size.
# Anything near the dump's size would mean it reads the blob whole.
PEAK_LIMIT = 80 * 1024 * 1024


def test_one_gib_crash_dump_is_streamed(containers, azurite):
    logs, reports = containers
    name = "j9/n1/crashdumps/core.big"
    size, sha = upload_big_crash_dump(azurite.connection_string, logs, name)
    tracemalloc.start()
    try:
        collect_blob(logs, reports, name)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    record = read_json(reports, "j9/files/n1/crashdumps/core.big.json")
    assert (record["size"], record["sha256"]) == (size, sha)
    assert (record["crashDump"]["executable"], record["crashDump"]["signalName"]) == ("bigapp", "SIGBUS")
    assert peak < PEAK_LIMIT, f"collecting a 1 GiB dump peaked at {peak / 2**20:.0f} MiB of Python memory"


def test_concurrent_triggers_leave_a_complete_report(containers):
    from concurrent.futures import ThreadPoolExecutor

    logs, reports = containers
    files = [(f"logs/f{i}.log", f"line {i}\n".encode()) for i in range(12)]
    put(logs, "j10/n1/manifest.json", manifest("j10", "n1", files))
    for path, data in files:
        put(logs, f"j10/n1/{path}", data)
    names = [f"j10/n1/{p}" for p, _ in files] + ["j10/n1/manifest.json"]
    with ThreadPoolExecutor(max_workers=6) as pool:
        list(pool.map(lambda n: collect_blob(logs, reports, n), names))
    report = read_json(reports, "j10/report.json")
    assert report["totals"]["files"] == 12
    assert report["collectionComplete"] is True
