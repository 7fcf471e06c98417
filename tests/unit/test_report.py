import json

import pytest

from shared.pure import blob_layout as bl
from shared.pure import report as rp

SHA_A, SHA_B = "a" * 64, "b" * 64


def manifest(*files, job="j", node="n1", failed=()):
    return {"schema": rp.MANIFEST_SCHEMA, "jobId": job, "nodeId": node,
            "files": [{"path": p, "size": s, "sha256": h} for p, s, h in files], "failed": list(failed)}


def rec(path, size, sha, node="n1", kind=None, **extra):
    kind = kind or (bl.CRASH_DUMP if path.startswith("crashdumps/") else bl.LOG)
    return {"jobId": "j", "nodeId": node, "kind": kind, "path": path, "size": size, "sha256": sha, **extra}


VERIFY = [
    ("all arrived", manifest(("logs/a", 1, SHA_A)), [rec("logs/a", 1, SHA_A)], True, [], []),
    ("empty manifest", manifest(), [], True, [], []),
    ("missing", manifest(("logs/a", 1, SHA_A), ("logs/b", 2, SHA_B)), [rec("logs/a", 1, SHA_A)], False,
     ["logs/b"], []),
    ("size mismatch", manifest(("logs/a", 1, SHA_A)), [rec("logs/a", 2, SHA_A)], False, [], ["logs/a"]),
    ("sha mismatch", manifest(("logs/a", 1, SHA_A)), [rec("logs/a", 1, SHA_B)], False, [], ["logs/a"]),
    ("extra files are fine", manifest(("logs/a", 1, SHA_A)), [rec("logs/a", 1, SHA_A), rec("logs/z", 5, SHA_B)],
     True, [], []),
    ("zero-byte", manifest(("logs/e", 0, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")),
     [rec("logs/e", 0, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")], True, [], []),
]


@pytest.mark.parametrize(("name", "man", "records", "collected", "missing", "mismatched"), VERIFY,
                         ids=[v[0] for v in VERIFY])
def test_verify_manifest(name, man, records, collected, missing, mismatched):
    node = rp.verify_manifest(man, records)
    assert node["collected"] is collected
    assert node["missing"] == missing
    assert [m["path"] for m in node["mismatched"]] == mismatched
    assert node["expectedFiles"] == len(man["files"])


BAD_MANIFESTS = [
    ("not json", b"{", "not JSON"),
    ("not object", b"[]", "JSON object"),
    ("wrong job", json.dumps(manifest(job="other")).encode(), "do not match"),
    ("wrong node", json.dumps(manifest(node="other")).encode(), "do not match"),
    ("files not list", json.dumps({**manifest(), "files": {}}).encode(), "files must be a list"),
    ("traversal", json.dumps(manifest(("logs/../../x", 1, SHA_A))).encode(), "files[0].path"),
    ("outside kinds", json.dumps(manifest(("other/x", 1, SHA_A))).encode(), "files[0].path"),
    ("negative size", json.dumps(manifest(("logs/a", -1, SHA_A))).encode(), "files[0].size"),
    ("bool size", json.dumps(manifest(("logs/a", True, SHA_A))).encode(), "files[0].size"),
    ("bad sha", json.dumps(manifest(("logs/a", 1, "XYZ"))).encode(), "files[0].sha256"),
]


@pytest.mark.parametrize(("name", "raw", "message"), BAD_MANIFESTS, ids=[b[0] for b in BAD_MANIFESTS])
def test_parse_manifest_rejects(name, raw, message):
    with pytest.raises(rp.ManifestInvalid, match=message.replace("[", r"\[").replace("]", r"\]")):
        rp.parse_manifest(raw, "j", "n1")


def test_parse_manifest_keeps_failures_bounded():
    raw = json.dumps(manifest(failed=[{"path": "logs/x", "error": "e" * 10_000}])).encode()
    parsed = rp.parse_manifest(raw, "j", "n1")
    assert parsed["failed"] == [{"path": "logs/x", "error": "e" * 500}]


def test_file_record_for_log_and_zero_byte():
    blob = bl.parse_log_blob("j/n1/logs/a.log")
    record = rp.file_record(blob, size=0, sha256=SHA_A, content_type="text/plain",
                            summary={"size": 0, "sha256": SHA_A, "lines": 0, "errorLines": 0, "lastLines": []})
    assert record["log"] == {"lines": 0, "errorLines": 0, "lastLines": []}
    assert record["note"] == "zero-byte file" and record["path"] == "logs/a.log"


def crash(path, fp, node="n1"):
    return rec(path, 10, SHA_A, node=node, crashDump={"fingerprint": fp, "format": "elf-core", "executable": "app",
                                                      "signalName": "SIGSEGV"})


REPORTS = [
    ("nothing yet", None, [], [], [], False, 0),
    ("running, statuses only", None, [{"nodeId": "n1", "prepExitCode": 0, "releaseExitCode": None, "tasks": []}],
     [], [], False, 1),
    ("collected", {"terminateReason": "AllTasksComplete"},
     [{"nodeId": "n1", "prepExitCode": 0, "releaseExitCode": 0, "tasks": ["t1"]}],
     [rec("logs/a", 1, SHA_A, log={"lines": 3, "errorLines": 1})],
     [rp.verify_manifest(manifest(("logs/a", 1, SHA_A)), [rec("logs/a", 1, SHA_A)])], True, 1),
    ("one node missing manifest", None,
     [{"nodeId": "n1", "releaseExitCode": 0}, {"nodeId": "n2", "releaseExitCode": 0}],
     [], [rp.verify_manifest(manifest(), [])], False, 2),
    ("bad manifest", None, [], [], [rp.invalid_manifest_record("j", "n1", "not JSON")], False, 1),
]


@pytest.mark.parametrize(("name", "outcome", "statuses", "records", "nodes", "complete", "n_nodes"), REPORTS,
                         ids=[r[0] for r in REPORTS])
def test_assemble_report(name, outcome, statuses, records, nodes, complete, n_nodes):
    report = rp.assemble_report("j", outcome, statuses, records, nodes, generated_at="2026-01-01T00:00:00Z")
    assert report["collectionComplete"] is complete
    assert report["totals"]["nodes"] == n_nodes == len(report["nodes"])
    assert report["outcome"] == outcome
    json.dumps(report)  # serialisable as is


def test_report_groups_crashes_and_counts():
    records = [crash("crashdumps/c1", "f1"), crash("crashdumps/c2", "f1", node="n2"), crash("crashdumps/c3", "f2"),
               rec("logs/a", 5, SHA_B, log={"lines": 2, "errorLines": 2}), rec("x", 1, SHA_A, node="n1", jobId="o")]
    report = rp.assemble_report("j", None, [], records, [])
    assert [(g["fingerprint"], g["count"], g["nodes"]) for g in report["crashGroups"]] == [
        ("f1", 2, ["n1", "n2"]), ("f2", 1, ["n1"])]
    assert report["totals"] == {"nodes": 2, "nodesCollected": 0, "files": 1, "crashDumps": 3, "bytes": 35,
                                "errorLines": 2}
    n1 = next(n for n in report["nodes"] if n["nodeId"] == "n1")
    assert (n1["files"], n1["crashDumps"], n1["manifestReceived"]) == (1, 2, False)
