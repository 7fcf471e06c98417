from __future__ import annotations

import re

import pytest

from shared.pure.report_page import MAX_ROWS, MAX_TASK_IDS, render_report_page

REPORT = {
    "jobId": "nightly-7",
    "generatedAt": "2026-11-24T10:00:00+00:00",
    "outcome": {"state": "completed", "terminateReason": "AllTasksComplete",
                "taskCounts": {"active": 0, "running": 0, "completed": 3, "succeeded": 2, "failed": 1}},
    "collectionComplete": False,
    "totals": {"nodes": 2, "nodesCollected": 1, "files": 1, "crashDumps": 1, "bytes": 300, "errorLines": 2},
    "nodes": [
        {"nodeId": "tvm-1", "prepExitCode": 0, "releaseExitCode": 0, "collected": True,
         "tasks": [{"id": "t1", "exitCode": 0}, {"id": "t2", "exitCode": 3}]},
        {"nodeId": "tvm-2", "prepExitCode": 1, "releaseExitCode": None, "collected": False,
         "missing": ["logs/app.log"], "tasks": []},
    ],
    "files": [{"nodeId": "tvm-1", "path": "logs/app.log", "size": 200, "lines": 10, "errorLines": 2}],
    "crashGroups": [{"fingerprint": "ab" * 32, "count": 1, "format": "elf-core", "executable": "/opt/app",
                     "signalName": "SIGSEGV", "nodes": ["tvm-1"]}],
}


def test_page_shows_outcome_nodes_crashes_and_logs():
    page = render_report_page(REPORT)
    assert "<title>Job nightly-7: report</title>" in page
    for text in ("AllTasksComplete", "succeeded 2", "failed 1", "incomplete", "1 of 2 nodes",
                 "tvm-1", "tvm-2", "missing: <code>logs/app.log</code>", "SIGSEGV", "abababababababab"):
        assert text in page, text
    assert 't2 <span class="bad">(exit 3)</span>' in page
    assert re.search(r'<span class="bad">1</span>', page), "prep exit 1 is marked"


@pytest.mark.parametrize("field", ["jobId", "nodeId", "path", "taskId", "executable"])
def test_every_user_chosen_value_is_escaped(field):
    hostile = '<script>alert("x")</script>'
    report = {**REPORT, "jobId": hostile if field == "jobId" else "j"}
    report["nodes"] = [{**REPORT["nodes"][0], "nodeId": hostile if field == "nodeId" else "n",
                        "tasks": [{"id": hostile if field == "taskId" else "t", "exitCode": 0}]}]
    report["files"] = [{**REPORT["files"][0], "path": hostile if field == "path" else "p"}]
    report["crashGroups"] = [{**REPORT["crashGroups"][0], "executable": hostile if field == "executable" else "e"}]
    page = render_report_page(report)
    assert "<script" not in page
    assert "&lt;script&gt;" in page


def test_a_job_without_outcome_or_files_still_renders():
    page = render_report_page({"jobId": "j", "nodes": [], "files": []})
    assert "running (no outcome recorded yet)" in page
    assert "No node has reported yet." in page and "No log collected yet." in page


def test_long_lists_are_cut_and_say_so():
    files = [{"nodeId": "n", "path": f"logs/f{i}.log", "size": 1} for i in range(MAX_ROWS + 5)]
    tasks = [{"id": f"t{i}", "exitCode": 0} for i in range(MAX_TASK_IDS + 7)]
    page = render_report_page({**REPORT, "files": files,
                               "nodes": [{**REPORT["nodes"][0], "tasks": tasks}]})
    assert page.count("logs/f") == MAX_ROWS
    assert "5 more rows not shown; report.json lists them all." in page
    assert "and 7 more" in page
