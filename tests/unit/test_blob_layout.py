import pytest

from shared.node import lognames
from shared.pure import blob_layout as bl
from shared.pure.request import RESERVED_JOB_IDS

NODE = "tvmps_" + "a" * 64 + "_d"
RUN = "20261201T120000Z-0123abcd"

GOOD = [
    ("job-1/node-1/manifest.json", ("job-1", "node-1", bl.MANIFEST, None, None)),
    (f"job-1/node-1/bundles/{RUN}.zip", ("job-1", "node-1", bl.BUNDLE, RUN, None)),
    (f"job-1/node-1/bundles/{RUN}.zip.002", ("job-1", "node-1", bl.BUNDLE, RUN, 2)),
    (f"job_2/{NODE}/crashdumps/{RUN}/job-1/t1/wd/core.123.gz", ("job_2", NODE, bl.CRASH_DUMP, RUN, None)),
    (f"j/n/crashdumps/{RUN}/abs/var/crash/core.gz.001", ("j", "n", bl.CRASH_DUMP, RUN, 1)),
    (f"j/n/crashdumps/{RUN}/données/été.dmp.gz", ("j", "n", bl.CRASH_DUMP, RUN, None)),
    ("j/_tasks/crashdumps/t7/core.1", ("j", "_tasks", bl.CRASH_DUMP, None, None)),
]


@pytest.mark.parametrize(("name", "expected"), GOOD, ids=[g[0][:40] for g in GOOD])
def test_parse_good_names(name, expected):
    parsed = bl.parse_log_blob(name)
    assert isinstance(parsed, bl.LogBlob), parsed
    assert (parsed.job_id, parsed.node_id, parsed.kind, parsed.run_id, parsed.part) == expected
    assert parsed.name == name


@pytest.mark.parametrize(("name", "path", "task"), [
    (f"j/n/crashdumps/{RUN}/job-1/t1/wd/core.123.gz", "job-1/t1/wd/core.123", "t1"),
    (f"j/n/crashdumps/{RUN}/abs/var/crash/core.gz.001", "abs/var/crash/core", None),
    ("j/_tasks/crashdumps/t7/sub/core.1", "job-1/t7/wd/sub/core.1", "t7"),
])
def test_a_dump_knows_where_it_was_on_the_node(name, path, task):
    parsed = bl.parse_log_blob(name)
    assert bl.dump_path(parsed) == path
    assert (parsed.task_id if parsed.from_failing_task else path.split("/")[1] if path.startswith("job-1/")
            else None) == task


BAD = [
    ("", "empty"),
    (None, "not_text"),
    (b"j/n/manifest.json", "not_text"),
    ("j/n/crashdumps/r/" + "x" * 1100, "too_long"),
    ("j/n/crashdumps/" + "x" * 300, "segment_too_long"),
    ("j/n/crashdumps/" + "a/" * 70 + "x", "too_deep"),
    ("j/n/crashdumps/../../other/n/manifest.json", "path_traversal"),
    ("j/n/./manifest.json", "path_traversal"),
    ("../j/n/manifest.json", "path_traversal"),
    ("/j/n/manifest.json", "empty_segment"),
    ("j//n/manifest.json", "empty_segment"),
    ("j/n/manifest.json/", "empty_segment"),
    ("j/n/a\nb", "bad_character"),
    ("j/n/a\x00b", "bad_character"),
    ("j/n/a\x1b[31mred", "bad_character"),
    ("j/n/evil\u202etxt.exe", "bad_character"),
    ("j/n/zero\u200bwidth", "bad_character"),
    ("j/n/private\ue000", "bad_character"),
    ("j/n/lone\ud800", "bad_character"),
    ("j/n/e\u0301", "not_nfc"),
    ("j/n/a\\..\\b", "backslash"),
    ("j/n/ lead", "whitespace"),
    ("j/n", "outside_layout"),
    ("j/n/other/x", "outside_layout"),
    ("j/n/logs/job-1/t1/stdout.txt", "outside_layout"),
    ("j/n/bundles/notarun.zip", "outside_layout"),
    (f"j/n/bundles/{RUN}.tar", "outside_layout"),
    (f"j/n/bundles/{RUN}/x.zip", "outside_layout"),
    ("j/n/crashdumps/notarun/core.gz", "outside_layout"),
    ("j/_tasks/manifest.json", "outside_layout"),
    ("j/_tasks/crashdumps/bad task!/core", "outside_layout"),
    ("j/n/manifest.json/x", "outside_layout"),
    ("bad job/n/manifest.json", "bad_job_id"),
    ("j" * 65 + "/n/manifest.json", "bad_job_id"),
    ("j/n.1/manifest.json", "bad_node_id"),
    ("j/" + "n" * 129 + "/manifest.json", "bad_node_id"),
    ("rejected/n/manifest.json", "reserved_job_id"),
    (f"Outcomes/n/bundles/{RUN}.zip", "reserved_job_id"),
    ("rejected-blobs/_tasks/crashdumps/t1/core", "reserved_job_id"),
    ("j/n/ctl\x01.txt", "bad_character"),
    ("j/n/bad\uffff.txt", "bad_character"),
]


def test_the_reserved_job_ids_are_the_orchestrators_own_folders():
    folders = {bl.REJECTED_PREFIX, bl.OUTCOMES_PREFIX, bl.REJECTED_BLOBS_PREFIX}
    assert {f"{job_id}/" for job_id in RESERVED_JOB_IDS} == folders


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


def test_the_uploader_and_the_collector_name_blobs_alike():
    assert bl.parse_log_blob(lognames.manifest_blob("j", "n")).kind == bl.MANIFEST
    assert bl.parse_log_blob(lognames.bundle_blob("j", "n", RUN)).kind == bl.BUNDLE
    dump = lognames.crash_dump_blob("j", "n", RUN, "job-1/t1/wd/core.9")
    assert bl.dump_path(bl.parse_log_blob(dump)) == "job-1/t1/wd/core.9"
    for index in range(3):
        part = bl.parse_log_blob(lognames.part_blob(dump, index, 3))
        assert (part.kind, part.part, bl.dump_path(part)) == (bl.CRASH_DUMP, index, "job-1/t1/wd/core.9")
    assert lognames.part_blob(dump, 0, 1) == dump


SAFE = [
    ("job-1/t1/stdout.txt", "job-1/t1/stdout.txt", None),
    ("abs/var/log/été.log", "abs/var/log/été.log", None),
    ("job-1/../../../etc/passwd", "_renamed/", "job-1/../../../etc/passwd"),
    ("job-1/t1/evil\u202etxt.exe", "_renamed/", "job-1/t1/evil\\u202etxt.exe"),
    ("job-1/t1/bell\x07", "_renamed/", "job-1/t1/bell\\x07"),
    ("job-1/t1/e\u0301", "_renamed/", "job-1/t1/e\\u0301"),
    ("a//b", "_renamed/", "a//b"),
    ("x" * 2000, "_renamed/", None),
]


@pytest.mark.parametrize(("path", "stored", "original"), SAFE, ids=[repr(s[0])[:30] for s in SAFE])
def test_a_name_that_breaks_a_rule_is_stored_safely_and_kept(path, stored, original):
    safe, kept = lognames.safe_path(path)
    assert lognames.problem(safe) is None and safe.startswith(stored)
    if stored.endswith("/"):
        assert kept is not None and kept.isascii() and kept.isprintable()
        if original is not None:
            assert kept == original
        assert lognames.safe_path(path) == (safe, kept), "the same name always gets the same safe name"
    else:
        assert (safe, kept) == (path, None)
