import pytest

from shared.pure import blob_layout as bl

NODE = "tvmps_" + "a" * 64 + "_d"

GOOD = [
    ("job-1/node-1/logs/job-1/t1/stdout.txt", ("job-1", "node-1", bl.LOG, "logs/job-1/t1/stdout.txt")),
    ("job-1/node-1/crashdumps/core.123", ("job-1", "node-1", bl.CRASH_DUMP, "crashdumps/core.123")),
    ("job-1/node-1/manifest.json", ("job-1", "node-1", bl.MANIFEST, "manifest.json")),
    (f"job_2/{NODE}/logs/abs/var/log/app.log", ("job_2", NODE, bl.LOG, "logs/abs/var/log/app.log")),
    ("j/n/logs/données/été.log", ("j", "n", bl.LOG, "logs/données/été.log")),
    ("j/n/logs/with space.log", ("j", "n", bl.LOG, "logs/with space.log")),
    ("j/n/logs/manifest.json", ("j", "n", bl.LOG, "logs/manifest.json")),
]


@pytest.mark.parametrize(("name", "expected"), GOOD, ids=[g[0][:40] for g in GOOD])
def test_parse_good_names(name, expected):
    parsed = bl.parse_log_blob(name)
    assert isinstance(parsed, bl.LogBlob), parsed
    assert (parsed.job_id, parsed.node_id, parsed.kind, parsed.path) == expected and parsed.name == name


BAD = [
    ("", "empty"),
    (None, "not_text"),
    (b"j/n/logs/x", "not_text"),
    ("j/n/logs/" + "x" * 1100, "too_long"),
    ("j/n/logs/" + "x/" * 500 + "y" * 10, "too_long"),
    ("j/n/logs/" + "x" * 300, "segment_too_long"),
    ("j/n/logs/" + "a/" * 70 + "x", "too_deep"),
    ("j/n/logs/../../other/n/logs/x", "path_traversal"),
    ("j/n/logs/./x", "path_traversal"),
    ("../j/n/logs/x", "path_traversal"),
    ("/j/n/logs/x", "empty_segment"),
    ("j//n/logs/x", "empty_segment"),
    ("j/n/logs/x/", "empty_segment"),
    ("j/n/logs/a\nb", "bad_character"),
    ("j/n/logs/a\x00b", "bad_character"),
    ("j/n/logs/a\x1b[31mred", "bad_character"),
    ("j/n/logs/evil\u202etxt.exe", "bad_character"),
    ("j/n/logs/zero\u200bwidth", "bad_character"),
    ("j/n/logs/private\ue000", "bad_character"),
    ("j/n/logs/lone\ud800", "bad_character"),
    ("j/n/logs/e\u0301", "not_nfc"),
    ("j/n/logs/a\\..\\b", "backslash"),
    ("j/n/logs/ lead", "whitespace"),
    ("j/n/logs", "outside_layout"),
    ("j/n", "outside_layout"),
    ("j/n/other/x", "outside_layout"),
    ("j/n/logs/", "empty_segment"),
    ("j/n/manifest.json/x", "outside_layout"),
    ("j/n/crashdumps", "outside_layout"),
    ("bad job/n/logs/x", "bad_job_id"),
    ("j" * 65 + "/n/logs/x", "bad_job_id"),
    ("j/n.1/logs/x", "bad_node_id"),
    ("j/" + "n" * 129 + "/logs/x", "bad_node_id"),
]


@pytest.mark.parametrize(("name", "rule"), BAD, ids=[repr(b[0])[:40] for b in BAD])
def test_parse_rejects_with_a_record(name, rule):
    rejected = bl.parse_log_blob(name)
    assert isinstance(rejected, bl.BadBlobName), rejected
    assert rejected.rule == rule
    assert rejected.message and len(rejected.name_sha256) == 64
    assert rejected.name.isascii() and rejected.name.isprintable() and len(rejected.name) < 260
    assert bl.rejected_blob_record_name(rejected).startswith("rejected-blobs/")


def test_rejection_key_is_stable():
    assert bl.parse_log_blob("j/n/x").name_sha256 == bl.parse_log_blob("j/n/x").name_sha256


REPORTS = [
    ("j/report.json", ("j", "report")),
    ("j/outcome.json", ("j", "outcome")),
    ("j/files/n/logs/a.log.json", ("j", "file")),
    ("j/nodes/n.json", ("j", "node")),
    ("j/other.json", None),
    ("j/files/n.json", None),
    ("../report.json", None),
    ("j/nodes/n/x.json", None),
]


@pytest.mark.parametrize(("name", "expected"), REPORTS, ids=[r[0] for r in REPORTS])
def test_parse_report_blob(name, expected):
    parsed = bl.parse_report_blob(name)
    if expected is None:
        assert isinstance(parsed, bl.BadBlobName)
    else:
        assert (parsed.job_id, parsed.kind) == expected


def test_report_names_round_trip():
    blob = bl.parse_log_blob("j/n/logs/job-1/t/stdout.txt")
    name = bl.file_record_name(blob)
    assert name == "j/files/n/logs/job-1/t/stdout.txt.json"
    assert bl.parse_report_blob(name).kind == "file"
    assert bl.record_path_from_name("j", "n", name) == blob.path
    assert bl.parse_report_blob(bl.node_record_name("j", "n")).kind == "node"
    assert bl.parse_log_blob(bl.manifest_name("j", "n")).kind == bl.MANIFEST
