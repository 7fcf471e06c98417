"""The incremental report (pure): merges in any order give the same report; it stays small at 100,000
tasks; uploads from nodes that did not run the job, or after collection closed, are refused."""

import itertools
import json
from datetime import UTC, datetime, timedelta

import pytest

from shared.node import lognames
from shared.pure import node_record as nodes
from shared.pure import report as rp
from shared.pure.backtrace import MAX_FRAME_CHARS, MAX_KIND_CHARS, Backtrace
from shared.pure.logscan import LogSummary
from shared.pure.manifest import ManifestInvalid, parse_manifest
from shared.pure.outcome import outcome_document
from shared.pure.task_summary import MAX_FAILED_LISTED, summarize
from shared.pure.values import Job, NodeRuns, TaskCounts, TaskResult, TaskRun

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
RUN = "20261201T120000Z-0123abcd"
SHA = "a" * 64


def manifest_json(job="j", node="n1", run=RUN, entries=2, parts=1, dumps=(), **extra):
    base = lognames.bundle_blob(job, node, run)
    body = {"schema": lognames.MANIFEST_SCHEMA, "jobId": job, "nodeId": node, "runId": run,
            "bundle": {"blob": base, "size": 300 * parts, "sha256": SHA, "entries": entries,
                       "parts": [{"blob": lognames.part_blob(base, i, parts), "size": 300} for i in range(parts)]},
            "crashDumps": [{"path": p, "blob": lognames.crash_dump_blob(job, node, run, p), "size": 10,
                            "sha256": SHA, "compressedSize": 5,
                            "parts": [{"blob": lognames.crash_dump_blob(job, node, run, p), "size": 5}]} for p in dumps],
            "failed": [], "failedCount": 0, "renamed": [], "renamedCount": 0}
    body.update(extra)
    return json.dumps(body).encode()


def test_manifest_parses_and_accounts_for_every_blob():
    m = parse_manifest(manifest_json(parts=3, dumps=["job-1/t1/wd/core.1"]), "j", "n1")
    assert (m.run_id, m.bundle.entries, len(m.bundle.parts), m.crash_dumps[0].path) == (RUN, 2, 3, "job-1/t1/wd/core.1")
    assert m.blobs() == {f"j/n1/bundles/{RUN}.zip.000", f"j/n1/bundles/{RUN}.zip.001", f"j/n1/bundles/{RUN}.zip.002",
                         f"j/n1/crashdumps/{RUN}/job-1/t1/wd/core.1.gz", "j/n1/manifest.json"}


BAD_MANIFESTS = [
    ("not json", b"{", "not JSON"),
    ("nested too deep", b"[" * 100_000 + b"]" * 100_000, "not JSON"),
    ("not object", b"[]", "JSON object"),
    ("old schema", json.dumps({"schema": "job-logs-manifest.v1", "jobId": "j", "nodeId": "n1"}).encode(), "schema"),
    ("wrong job", manifest_json(job="other"), "do not match"),
    ("bad run", manifest_json(run="yesterday"), "runId"),
    ("bundle of another node", manifest_json().replace(b'"j/n1/bundles', b'"j/n2/bundles'), "bundle.blob"),
    ("negative size", manifest_json().replace(b'"size": 300,', b'"size": -1,', 1), "size must be"),
    ("bad sha", manifest_json().replace(SHA.encode(), b"xyz", 1), "sha256"),
    ("dump outside the node", manifest_json(dumps=["../../x"]), "crashDumps[0]"),
    ("too big", b" " * (5 * 1024 * 1024), "limit"),
]


@pytest.mark.parametrize(("name", "raw", "message"), BAD_MANIFESTS, ids=[b[0] for b in BAD_MANIFESTS])
def test_manifest_rejects_naming_the_field(name, raw, message):
    with pytest.raises(ManifestInvalid, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_manifest(raw, "j", "n1")


def summary(size=10, lines=1, errors=0, first=()):
    return LogSummary(size=size, sha256=SHA, lines=lines, error_lines=errors, first_errors=list(first))


def node_row(node="n1", run=RUN, files=None):
    tally = nodes.NodeTally("j", node, parse_manifest(manifest_json(node=node, run=run), "j", node))
    for path, s in files or [("job-1/t1/stdout.txt", summary())]:
        tally.add(path, s)
    return tally.record(NOW.isoformat())


def test_tally_keeps_stderr_excerpts_first_and_renames_hostile_paths():
    tally = nodes.NodeTally("j", "n1", parse_manifest(manifest_json(), "j", "n1"))
    tally.add("job-1/t1/stdout.txt", summary(errors=1, first=["error in stdout"]))
    tally.add("job-1/t1/stderr.txt", summary(errors=1, first=["Traceback"]))
    line = tally.add("job-1/t2/../../../etc/passwd", summary())
    record = tally.record(NOW.isoformat())
    assert record["excerpts"] == {"t1": ["Traceback"]}
    assert line["path"].startswith("_renamed/") and line["original"] == "job-1/t2/../../../etc/passwd"
    assert (record["files"], record["renamedCount"], record["errorLines"]) == (3, 1, 2)


PY_TRACE = Backtrace("python", "ZeroDivisionError", "compute (/app/solve.py:12)")
GDB_TRACE = Backtrace("gdb", "SIGSEGV", "step (solver.c:42)")


def test_tally_keeps_backtraces_stderr_first_and_those_of_the_nodes_dumps_whatever_it_wants():
    m = parse_manifest(manifest_json(dumps=["job-1/t3/wd/core.1"]), "j", "n1")
    tally = nodes.NodeTally("j", "n1", m, wanted=frozenset({"t1"}))
    tally.add("job-1/t1/stdout.txt", summary(), GDB_TRACE)
    tally.add("job-1/t1/stderr.txt", summary(), PY_TRACE)
    line = tally.add("job-1/t3/stderr.txt", summary(), GDB_TRACE)
    tally.add("job-1/t4/stderr.txt", summary(), PY_TRACE)
    tally.add("job-1/jobrelease/stderr.txt", summary())
    record = tally.record(NOW.isoformat())
    assert line["backtrace"] == {"format": "gdb", "kind": "SIGSEGV", "frame": "step (solver.c:42)"}
    assert record["backtraces"] == {"t1": {"format": "python", "kind": "ZeroDivisionError",
                                           "frame": "compute (/app/solve.py:12)", "path": "job-1/t1/stderr.txt"}}
    assert record["crashDumps"][0]["backtrace"] == {"format": "gdb", "kind": "SIGSEGV", "frame": "step (solver.c:42)",
                                                    "path": "job-1/t3/stderr.txt"}
    assert record["backtraceFiles"] == 4 and "backtraceFiles" not in nodes.report_row(record), "a count, not per node"
    index = [{"path": "job-1/t1/stdout.txt", "backtrace": GDB_TRACE.to_dict()},
             {"path": "job-1/t1/stderr.txt", "firstErrors": ["boom"], "backtrace": PY_TRACE.to_dict()},
             {"path": "job-1/t2/stderr.txt", "backtrace": PY_TRACE.to_dict()}]
    found = nodes.details_from_index(index, {"t1"})
    assert found.excerpts == {"t1": ["boom"]}
    assert found.backtraces == {"t1": {**PY_TRACE.to_dict(), "path": "job-1/t1/stderr.txt"}}


def test_a_crash_group_shows_the_backtrace_its_dumps_task_printed():
    listed = [(f"{i:064x}", rp.crash_metadata({**CRASH, "sha256": f"{i:064x}", "copies": [
        {"nodeId": node, "taskId": task}]})) for i, (node, task) in enumerate([("n1", "t1"), (None, "t2")])]
    tasks = [TaskResult("t1", "completed", "n1", 1, "failure"), TaskResult("t2", "completed", "n2", 1, "failure")]
    report = merged(STEPS["n1"], STEPS["n2"], lambda r: rp.merge_outcome(r, outcome(tasks=tasks)))
    trace = rp.brief_backtrace({**GDB_TRACE.to_dict(), "path": "job-1/t1/stderr.txt"}, "t1", "n1")
    assert trace == {"kind": "SIGSEGV", "frame": "step (solver.c:42)", "taskId": "t1", "nodeId": "n1", "log": "stderr"}
    (group,) = rp.recount_crashes(report, listed, {f"{0:064x}": trace})["crashGroups"]
    assert (group["count"], group["backtrace"]) == (2, trace)
    # Only the failing task's own upload (no node record lists it): the failed list's word for its task.
    report = rp.fill_excerpts(report, {}, "n2", {"t2": {**PY_TRACE.to_dict(), "path": "job-1/t2/stderr.txt"}})
    (group,) = rp.recount_crashes(report, listed[1:])["crashGroups"]
    assert group["backtrace"] == {"kind": "ZeroDivisionError", "frame": "compute (/app/solve.py:12)", "taskId": "t2",
                                  "nodeId": "n2"}


def test_failed_tasks_get_their_backtrace_from_their_own_node_only():
    tasks = [TaskResult(f"t{i}", "completed", "n1", 1, "failure") for i in range(3)]
    report = merged(lambda r: rp.merge_outcome(r, outcome(("n1",), tasks)))
    traces = {f"t{i}": {**PY_TRACE.to_dict(), "path": f"job-1/t{i}/stderr.txt"} for i in range(2)}
    assert all("backtrace" not in t for t in rp.fill_excerpts(report, {}, "n2", traces)["tasks"]["failed"])
    report = rp.finish(rp.fill_excerpts(report, {}, "n1", traces), NOW.isoformat())
    brief = {"kind": "ZeroDivisionError", "frame": "compute (/app/solve.py:12)"}
    assert [t.get("backtrace") for t in report["tasks"]["failed"]] == [brief, brief, None]


def job(state="completed"):
    return Job(id="j", state=state, metadata={}, creation_time=NOW - timedelta(hours=1), end_time=NOW,
               terminate_reason="AllTasksComplete")


def run_ok():
    return TaskRun(state="completed", exit_code=0, result="success")


def outcome(node_ids=("n1", "n2"), tasks=(), without=()):
    runs = [NodeRuns(n, run_ok(), run_ok()) for n in node_ids]
    return outcome_document(job(), TaskCounts(completed=len(tasks), succeeded=len(tasks)), summarize(tasks).to_dict(),
                            runs, list(without), NOW)


def merged(*steps):
    report = rp.empty_report("j")
    for step in steps:
        report = rp.finish(step(report), NOW.isoformat())
    return report


ROW = {n: nodes.report_row(node_row(n)) for n in ("n1", "n2", "n9")}
CRASH = rp.crash_record("j", {"sha256": SHA, "size": 10, "format": "elf-core", "executable": "app", "signal": 11,
                              "signalName": "SIGSEGV", "exceptionCode": None, "location": "app+0x1",
                              "fingerprint": "f" * 64, "note": None},
                        {"blob": "b", "nodeId": "n1", "taskId": "t1", "path": "job-1/t1/wd/core"}, NOW.isoformat())
STEPS = {
    "n1": lambda r: rp.merge_node(r, ROW["n1"]),
    "n2": lambda r: rp.merge_node(r, ROW["n2"]),
    "crash": lambda r: rp.merge_crash(r, CRASH),
    "outcome": lambda r: rp.merge_outcome(r, outcome()),
}


@pytest.mark.parametrize("order", list(itertools.permutations(STEPS)), ids=lambda o: ",".join(o))
def test_merges_in_any_order_give_one_report(order):
    report = merged(*(STEPS[k] for k in order))
    reference = merged(*STEPS.values())
    for key in ("collection", "collectionComplete", "totals", "crashGroups", "outcome", "tasks"):
        assert report[key] == reference[key], key
    assert [{k: v for k, v in n.items() if k != "collectedAt"} for n in report["nodes"]] == \
        [{k: v for k, v in n.items() if k != "collectedAt"} for n in reference["nodes"]]
    assert report["collectionComplete"] is True and report["collection"]["closedAt"] == NOW.isoformat()
    assert report["totals"]["nodesCollected"] == 2 and report["totals"]["crashDumps"] == 1


def test_collection_waits_for_every_node_with_a_manifest_only():
    waiting = merged(STEPS["n1"], lambda r: rp.merge_outcome(r, outcome(("n1", "n2", "n3"), without=["n3"])))
    assert waiting["collectionComplete"] is False and waiting["collection"]["waitingFor"] == ["n2"]
    rows = {n["nodeId"]: n["status"] for n in waiting["nodes"]}
    assert rows == {"n1": "collected", "n2": "waiting", "n3": "no manifest"}
    done = rp.finish(STEPS["n2"](waiting), NOW.isoformat())
    assert done["collectionComplete"] is True


def test_a_job_that_ran_nowhere_is_complete_at_its_outcome():
    report = merged(lambda r: rp.merge_outcome(r, outcome(())))
    assert report["collectionComplete"] is True and report["nodes"] == []


def test_a_node_collected_before_the_outcome_that_did_not_run_the_job_is_refused():
    report = merged(STEPS["n1"], lambda r: rp.merge_node(r, ROW["n9"]), STEPS["outcome"], STEPS["n2"])
    rows = {n["nodeId"]: n["status"] for n in report["nodes"]}
    assert rows["n9"] == "refused"
    assert report["totals"]["nodes"] == 2 and report["totals"]["refused"] == 1
    assert report["refused"][0]["rule"] == "node_did_not_run_job"


@pytest.mark.parametrize(("steps", "node", "run", "existing", "rule"), [
    ([], "n1", RUN, None, None),
    (["outcome"], "n9", RUN, None, "node_did_not_run_job"),
    (["outcome"], "n1", RUN, None, None),
    (["n1", "n2", "outcome"], "n1", "20261201T130000Z-00000000", None, "after_collection_closed"),
    (["n1", "n2", "outcome"], "n1", RUN, {"runId": RUN}, None),  # a redelivery is not a refusal
])
def test_refusal(steps, node, run, existing, rule):
    report = merged(*(STEPS[s] for s in steps))
    refused = nodes.refusal(report, node, run, existing)
    assert (refused.rule if refused else None) == rule


def test_failed_tasks_listed_in_full_up_to_a_limit_with_their_excerpts():
    tasks = [TaskResult(f"t{i}", "completed", "n1", exit_code=1 if i % 2 else 0, result="failure" if i % 2 else "success",
                        start_time=NOW, end_time=NOW + timedelta(seconds=i)) for i in range(2000)]
    report = merged(lambda r: rp.merge_outcome(r, outcome(("n1",), tasks), {"t1": ["ERROR one"]}))
    listed = report["tasks"]["failed"]
    assert (report["tasks"]["failedTotal"], len(listed)) == (1000, MAX_FAILED_LISTED)
    assert listed[0]["id"] == "t1" and listed[0]["excerpt"] == ["ERROR one"]
    assert report["tasks"]["durationSeconds"]["max"] == 1999
    late = rp.fill_excerpts(report, {"t3": ["Traceback"]}, "n2")
    assert "excerpt" not in late["tasks"]["failed"][1], "another node's lines do not speak for t3"
    late = rp.fill_excerpts(report, {"t3": ["Traceback"]}, "n1")
    assert late["tasks"]["failed"][1]["excerpt"] == ["Traceback"]


def test_report_stays_under_one_mib_at_100000_tasks_on_1000_nodes():
    node_ids = [f"tvmps_{i:064x}_d" for i in range(1000)]
    # Names as long as Batch allows: 64-character task ids, tvmps_<64 hex>_d node ids.
    tasks = [TaskResult(f"render-frame-{i:06d}-" + "x" * 44, "completed", node_ids[i % 1000], exit_code=1,
                        result="failure", retry_count=3, start_time=NOW, end_time=NOW + timedelta(seconds=5),
                        failure="FailureExitCode") for i in range(100_000)]
    excerpts = {t.id: ["E" * 200, "F" * 200, "G" * 200] for t in tasks[:1000]}
    report = rp.merge_outcome(rp.empty_report("j"), outcome(node_ids, tasks), excerpts)
    longest = {"format": "python", "kind": "K" * MAX_KIND_CHARS, "frame": "f" * MAX_FRAME_CHARS}
    for n, node_id in enumerate(node_ids):  # every listed failure with the longest backtrace
        report = rp.fill_excerpts(report, {}, node_id, {t.id: {**longest, "path": f"job-1/{t.id}/stderr.txt"}
                                                        for t in tasks[n:1000:1000]})
    for n in node_ids:
        report = rp.merge_node(report, {**ROW["n1"], "nodeId": n})
    for i in range(5000):
        copy = {"blob": f"j/{node_ids[i % 1000]}/crashdumps/20261201T120000Z-0123abcd/job-1/{tasks[i].id}/wd/core",
                "nodeId": node_ids[i % 1000], "taskId": tasks[i].id, "path": f"job-1/{tasks[i].id}/wd/core"}
        report = rp.merge_crash(report, {**CRASH, "sha256": f"{i:064x}", "fingerprint": f"{i % 300:064x}",
                                         "executable": "e" * 200, "location": "l" * 200, "copies": [copy],
                                         "backtrace": rp.brief_backtrace(
                                             {**longest, "path": f"job-1/{tasks[i].id}/stderr.txt"}, tasks[i].id,
                                             copy["nodeId"])})
    report = rp.finish(report, NOW.isoformat())
    size = len(json.dumps(report, separators=(",", ":"), sort_keys=True).encode())  # as BlobContainer writes it
    assert report["collectionComplete"] is True and report["totals"]["crashDumps"] == 5000
    assert len(report["crashGroups"]) == rp.MAX_GROUPS + 1  # the rest share "other"
    assert sum(1 for t in report["tasks"]["failed"] if t.get("backtrace")) == MAX_FAILED_LISTED
    assert all(g.get("backtrace") for g in report["crashGroups"])
    assert size < 1024 * 1024, f"report.json would be {size} bytes"
