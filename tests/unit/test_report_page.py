from __future__ import annotations

import re

import pytest

from shared.pure.report_page import MAX_ROWS, MAX_TASK_IDS, render_report_page

REPORT = {
    "jobId": "nightly-7",
    "generatedAt": "2026-11-24T10:00:00+00:00",
    "outcome": {"state": "completed", "terminateReason": "AllTasksComplete",
                "taskCounts": {"active": 0, "running": 0, "completed": 3, "succeeded": 2, "failed": 1}},
    "tasks": {"failedTotal": 1, "neverStarted": 0, "durationSeconds": {"p50": 1.5, "p90": 2.0, "max": 3.25},
              "failed": [{"id": "t2", "nodeId": "tvm-1", "exitCode": 3, "retries": 1,
                          "excerpt": ["ERROR: no input", "Traceback (most recent call last)"]}]},
    "collectionComplete": False,
    "collection": {"waitingFor": ["tvm-2"]},
    "totals": {"nodes": 2, "nodesCollected": 1, "files": 1, "crashDumps": 1, "bytes": 300, "errorLines": 2},
    "nodes": [
        {"nodeId": "tvm-1", "status": "collected", "prepExitCode": 0, "releaseExitCode": 0, "tasksRun": 3,
         "tasksFailed": 1, "files": 4, "errorLines": 2, "uploadFailureCount": 2},
        {"nodeId": "tvm-2", "status": "invalid", "prepExitCode": 1, "releaseExitCode": None,
         "manifestError": "manifest is not JSON"},
    ],
    "crashGroups": [{"fingerprint": "ab" * 32, "count": 1, "format": "elf-core", "executable": "/opt/app",
                     "signalName": "SIGSEGV", "nodes": ["tvm-1"]}],
}


def test_page_shows_outcome_nodes_failed_tasks_and_crashes():
    page = render_report_page(REPORT)
    assert "<title>Job nightly-7: report</title>" in page
    for text in ("AllTasksComplete", "succeeded 2", "failed 1", "incomplete", "1 of 2 nodes", "waiting for tvm-2",
                 "tvm-1", "tvm-2", "manifest: manifest is not JSON", "2 files failed to upload", "SIGSEGV",
                 "abababababababab", "<code>ERROR: no input</code>", "p50 1.5 s", "max 3.25 s"):
        assert text in page, text
    assert re.search(r'<span class="bad">1</span>', page), "prep exit 1 is marked"
    assert re.search(r'<td><span class="bad">3</span></td>', page), "the failed task's exit code is marked"


@pytest.mark.parametrize("field", ["jobId", "nodeId", "taskId", "excerpt", "executable"])
def test_every_user_chosen_value_is_escaped(field):
    hostile = '<script>alert("x")</script>'
    report = {**REPORT, "jobId": hostile if field == "jobId" else "j"}
    report["nodes"] = [{**REPORT["nodes"][0], "nodeId": hostile if field == "nodeId" else "n"}]
    report["tasks"] = {**REPORT["tasks"], "failed": [{**REPORT["tasks"]["failed"][0],
                                                      "id": hostile if field == "taskId" else "t",
                                                      "excerpt": [hostile if field == "excerpt" else "e"]}]}
    report["crashGroups"] = [{**REPORT["crashGroups"][0], "executable": hostile if field == "executable" else "e"}]
    page = render_report_page(report)
    assert "<script" not in page
    assert "&lt;script&gt;" in page


def test_a_job_without_outcome_or_nodes_still_renders():
    page = render_report_page({"jobId": "j", "nodes": []})
    assert "running (no outcome recorded yet)" in page
    assert "No node has reported yet." in page and "Failed tasks" not in page


def test_long_lists_are_cut_and_say_so():
    nodes = [{"nodeId": f"node-{i}", "status": "collected"} for i in range(MAX_ROWS + 5)]
    failed = [{"id": f"t{i}", "exitCode": 1} for i in range(MAX_TASK_IDS + 7)]
    page = render_report_page({**REPORT, "nodes": nodes, "tasks": {"failed": failed, "failedTotal": 1000}})
    assert page.count("<code>node-") == MAX_ROWS
    assert "5 more rows not shown; report.json lists them all." in page
    assert f"{1000 - MAX_TASK_IDS} more failed tasks: tasks.jsonl lists every task." in page
