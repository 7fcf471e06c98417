from __future__ import annotations

import re

import pytest

from shared.pure import task_view as tv
from shared.pure.report_page import MAX_ROWS, MAX_TASK_IDS, render_node_files, render_report_page

SHA = "cd" * 32
REPORT = {
    "jobId": "nightly-7",
    "generatedAt": "2026-11-24T10:00:00+00:00",
    "outcome": {"state": "completed", "terminateReason": "AllTasksComplete", "createdAt": "2026-11-24T09:00:00Z",
                "endedAt": "2026-11-24T09:05:30Z",
                "taskCounts": {"active": 0, "running": 0, "completed": 3, "succeeded": 2, "failed": 1}},
    "tasks": {"failedTotal": 1, "neverStarted": 0, "durationSeconds": {"count": 3, "p50": 1.5, "p90": 2.0, "max": 4.5},
              "failed": [{"id": "t2", "nodeId": "tvm-1", "exitCode": 3, "retries": 1, "start": "2026-11-24T09:01:00Z",
                          "end": "2026-11-24T09:03:05Z", "failure": "FailureExitCode",
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
                     "signalName": "SIGSEGV", "location": "libc.so.6+0x1234", "nodes": ["tvm-1"], "tasks": ["t2"],
                     "dumps": [{"sha256": SHA, "size": 4096, "nodeId": "tvm-1", "taskId": "t2"}]}],
}


def test_page_shows_outcome_nodes_failed_tasks_and_crashes():
    page = render_report_page(REPORT)
    assert "<title>Job nightly-7: report</title>" in page
    for text in ("AllTasksComplete", "succeeded 2", "failed 1", "incomplete", "1 of 2 nodes", "waiting for tvm-2",
                 "tvm-1", "tvm-2", "manifest: manifest is not JSON", "2 files failed to upload", "SIGSEGV",
                 "abababababababab", "<pre>ERROR: no input\nTraceback (most recent call last)</pre>",
                 "p50 1.5 s, p90 2.0 s, max 4.5 s (of 3 tasks)", "<code>libc.so.6+0x1234</code>",
                 "created</th><td>2026-11-24 09:00:00 UTC", "2026-11-24 09:05:30 UTC (ran for 5 min 30 s)",
                 "<td>2 min 05 s</td>", "FailureExitCode", "1 task failed: see Failed tasks below for its exit code"):
        assert text in page, text
    assert re.search(r'<span class="bad">1</span>', page), "prep exit 1 is marked"
    assert re.search(r'<td><span class="bad">3</span></td>', page), "the failed task's exit code is marked"
    assert "<script" not in page


def test_links_download_logs_and_dumps_with_the_pages_authorization():
    page = render_report_page(REPORT, auth={"code": "k&y"})
    assert '<a href="nightly-7/files/tvm-1/job-1/t2/stderr.txt?code=k%26y">stderr</a>' in page
    assert '<a href="nightly-7/files/tvm-1/job-1/jobpreparation/stdout.txt?code=k%26y">stdout</a>' in page
    assert '<a href="nightly-7/files/tvm-1?code=k%26y">tvm-1</a>' in page
    assert f'<a href="nightly-7/dumps/{SHA}?code=k%26y">{SHA[:12]}… (4096 bytes, t2)</a>' in page
    assert "nightly-7/files/tvm-2" not in page, "a node without a collected bundle has nothing to link"
    lost = {**REPORT, "tasks": {**REPORT["tasks"], "failed": [{**REPORT["tasks"]["failed"][0], "nodeId": "tvm-2"}]}}
    assert "job-1/t2/stderr.txt" not in render_report_page(lost), "a task on a node never collected: no link"


@pytest.mark.parametrize("field", ["jobId", "nodeId", "taskId", "excerpt", "executable", "location", "prepStderr",
                                   "frame", "kind"])
def test_every_user_chosen_value_is_escaped(field):
    hostile = '<script>alert("x")</script><a href="//evil">'
    report = {**REPORT, "jobId": hostile if field == "jobId" else "j"}
    trace = {"kind": hostile if field == "kind" else "K", "frame": hostile if field == "frame" else "f"}
    report["nodes"] = [{**REPORT["nodes"][0], "nodeId": hostile if field == "nodeId" else "n", "prepResult": "failure",
                        "prepOutput": {"stderrTail": [hostile if field == "prepStderr" else "e"]}}]
    report["tasks"] = {**REPORT["tasks"], "failed": [{**REPORT["tasks"]["failed"][0], "nodeId": report["nodes"][0]["nodeId"],
                                                      "id": hostile if field == "taskId" else "t",
                                                      "excerpt": [hostile if field == "excerpt" else "e"],
                                                      "backtrace": trace}]}
    report["crashGroups"] = [{**REPORT["crashGroups"][0], "executable": hostile if field == "executable" else "e",
                              "location": hostile if field == "location" else "l",
                              "backtrace": {**trace, "taskId": hostile if field == "taskId" else "t",
                                            "nodeId": report["nodes"][0]["nodeId"], "log": "stderr"}}]
    page = render_report_page(report)
    assert "<script" not in page and 'href="//evil"' not in page
    assert "&lt;script&gt;" in page


def test_secrets_in_error_lines_and_prep_output_are_redacted():
    report = {**REPORT, "nodes": [{**REPORT["nodes"][1], "prepResult": "failure",
                                   "prepOutput": {"stderrTail": ["curl https://a.blob.core.windows.net/c?sv=1&sig=abc123"]}}]}
    report["tasks"] = {**REPORT["tasks"], "failed": [{**REPORT["tasks"]["failed"][0],
                                                      "excerpt": ["login failed: password=hunter2"]}]}
    page = render_report_page(report)
    assert "password=REDACTED" in page and "hunter2" not in page
    assert "sig=REDACTED" in page and "abc123" not in page


def test_where_tasks_crashed_by_their_backtraces():
    compute = {"kind": "ZeroDivisionError", "frame": "compute (/app/solve.py:12)"}
    failed = [{**REPORT["tasks"]["failed"][0], "id": f"t{i}", "backtrace": compute} for i in range(7)]
    failed.append({**REPORT["tasks"]["failed"][0], "id": "t9",
                   "backtrace": {"kind": None, "frame": "upload (https://a/c?sp=r&sig=SECRET)"}})
    group = {**REPORT["crashGroups"][0], "backtrace": {"kind": "SIGSEGV", "frame": "step (solver.c:42)",
                                                       "taskId": "t2", "nodeId": "tvm-1", "log": "stderr"}}
    page = render_report_page({**REPORT, "tasks": {**REPORT["tasks"], "failed": failed, "failedTotal": 20},
                               "crashGroups": [group, REPORT["crashGroups"][0]]})
    assert page.count('<td><code>compute (/app/solve.py:12)</code> <span class="muted">ZeroDivisionError</span></td>') \
        == 7 + 1, "each failed task's 'crashed at', and their group's"
    assert ('<td><code>step (solver.c:42)</code> <span class="muted">SIGSEGV</span><br><span class="muted">printed in '
            '<a href="nightly-7/files/tvm-1/job-1/t2/stderr.txt">stderr</a> of <code>t2</code></span><br>dump: '
            "<code>libc.so.6+0x1234</code></td>") in page, "the dump's group: the backtrace over the dump's location"
    assert "<td><code>libc.so.6+0x1234</code></td>" in page, "a group whose tasks printed none: the dump's location"
    assert ("<h2>Crashes in task logs</h2><p class=\"muted\">Of the 8 failed tasks listed (20 failed in all).</p>"
            '<table><thead><tr><th>crashed at</th><th>failed tasks</th><th>for example</th></tr></thead><tbody>'
            '<tr><td><code>compute (/app/solve.py:12)</code> <span class="muted">ZeroDivisionError</span></td>'
            '<td class="n">7</td><td><code>t0</code>, <code>t1</code>, <code>t2</code>, <code>t3</code>, '
            "<code>t4</code></td></tr>"
            '<tr><td><code>upload (https://a/c?sp=r&amp;sig=REDACTED</code></td><td class="n">1</td>'
            "<td><code>t9</code></td></tr></tbody></table>") in page
    assert "SECRET" not in page
    assert "Of the 8 failed tasks listed, 8 tasks printed a backtrace: see Crashes in task logs below" in page
    assert "Crashes in task logs" not in render_report_page(REPORT), "no backtrace, no section"


def test_a_job_without_outcome_or_nodes_still_renders():
    page = render_report_page({"jobId": "j", "nodes": []})
    assert "running (no outcome recorded yet)" in page
    assert "The job has not ended yet" in page
    assert "No node has reported yet." in page and "Failed tasks" not in page


def test_long_lists_are_cut_and_say_so():
    nodes = [{"nodeId": f"node-{i}", "status": "invalid"} for i in range(MAX_ROWS + 5)]
    failed = [{"id": f"t{i}", "exitCode": 1} for i in range(MAX_TASK_IDS + 7)]
    page = render_report_page({**REPORT, "nodes": nodes, "tasks": {"failed": failed, "failedTotal": 1000}})
    assert page.count("<td><code>node-") == MAX_ROWS
    assert "5 more rows not shown; report.json lists them all." in page
    assert f"{1000 - MAX_TASK_IDS} more failed tasks: tasks.jsonl lists every task." in page


def _line(i, node="tvm-1", start=60, seconds=10, exit_code=0, state="completed"):
    def at(offset):
        return f"2026-11-24T09:{offset // 60:02d}:{offset % 60:02d}Z"

    line = {"id": f"task-{i}", "nodeId": node, "state": state, "exitCode": exit_code,
            "result": "success" if exit_code == 0 else "failure", "start": at(start)}
    if state == "completed":
        line["end"] = at(start + seconds)
    return line


def timeout_report():
    outcome = {**REPORT["outcome"], "terminateReason": "OrchestratorTimeout", "deadline": "2026-11-24T09:05:00Z"}
    return {**REPORT, "outcome": outcome, "tasks": {"failedTotal": 0, "failed": []}, "crashGroups": [],
            "totals": {}}


def test_a_timeout_says_which_tasks_were_running_and_which_never_started():
    ended = {**_line(4, exit_code=-9, start=100, seconds=200), "failure": "TaskEnded"}
    lines = [_line(1), _line(2, state="running", start=200), {"id": "task-3", "state": "active"}, ended]
    report = timeout_report()
    report["tasks"] = {"failedTotal": 1, "failed": [ended]}
    view = tv.build_view(report["outcome"], lines)
    page = render_report_page(report, view)
    said = re.sub(r"\s+", " ", page)
    assert ("The job ran out of time: the orchestrator ended it at its deadline (2026-11-24 09:05:00 UTC). 2 tasks "
            "were still running and stopped with the job: <code>task-2</code>, <code>task-4</code>. 1 task never "
            "started: <code>task-3</code>." in said)
    assert "failed: see Failed tasks" not in said, "tasks ended with the job are not failures of their own"
    assert "<h2>Still running when the job ended (2)</h2>" in page and "<h2>Never started (1)</h2>" in page
    assert "TaskEnded (still running when the job ended)" in page


def test_a_prep_failure_is_explained_with_its_stderr():
    report = {**REPORT, "outcome": {**REPORT["outcome"], "terminateReason": "PrepTaskFailed"},
              "tasks": {"failedTotal": 0, "failed": [], "neverStarted": 8}, "crashGroups": [], "totals": {},
              "nodes": [{"nodeId": "tvm-9", "status": "nothing to collect", "prepExitCode": 2, "prepResult": "failure",
                         "prepFailure": "FailureExitCode",
                         "prepOutput": {"message": "The task exited with an exit code representing a failure.",
                                        "stderrTail": ["mount: /data: permission denied", "giving up"]}}]}
    page = render_report_page(report)
    assert ("The job was ended because its preparation task failed on every node of the pool, so no task could "
            "run. 8 tasks never started.") in page
    assert ("Preparation failed on node <code>tvm-9</code> with exit code 2 (FailureExitCode): Batch runs none of "
            "the job's tasks on a node whose preparation failed. Batch said: The task exited with an exit code "
            "representing a failure. The end of its stderr:") in page
    assert "<pre>mount: /data: permission denied\ngiving up</pre>" in page


def test_a_small_job_draws_a_bar_per_task_with_its_tooltip():
    lines = [_line(1, seconds=30), _line(2, exit_code=1, start=100, seconds=5), _line(3, node="tvm-2", start=90)]
    view = tv.build_view(REPORT["outcome"], lines)
    page = render_report_page(REPORT, view)
    assert "<h2>Timeline</h2>" in page and "<svg" in page and "each task a bar (3 tasks ran)" in page
    assert "<title>task-1 on tvm-1: 30 s, exit 0</title>" in page
    assert '<rect x="' in page and 'fill="#c62828"><title>task-2 on tvm-1: 5.0 s, exit 1</title>' in page


def test_a_big_job_is_drawn_per_node_and_bucket():
    lines = (_line(i, node=f"tvm-{i % 4}", start=i % 300, seconds=3, exit_code=int(i % 997 == 0))
             for i in range(100_000))
    view = tv.build_view(REPORT["outcome"], lines)
    assert view.bars is None and view.total == 100_000
    page = render_report_page(REPORT, view)
    assert "100000 tasks summed per node in columns of 1.4 s" in page
    assert page.count("<rect") <= 4 * tv.BUCKETS * 2 + 20, "a few hundred rectangles, not 100,000"
    assert len(page) < 500_000


def test_the_node_file_listing_links_each_file_and_escapes_hostile_names():
    hostile = 'job-1/t1/wd/"><img src=x onerror=alert(1)>.log'
    page = render_node_files("nightly-7", "tvm-1", [{"path": "job-1/t1/stdout.txt", "size": 12, "lines": 1,
                                                     "errorLines": 0}, {"path": hostile, "size": 1}],
                             auth={"code": "k"})
    assert '<a href="../../nightly-7/files/tvm-1/job-1/t1/stdout.txt?code=k">job-1/t1/stdout.txt</a>' in page
    assert "<img" not in page and "&lt;img src=x onerror=alert(1)&gt;.log</a>" in page
    assert '<a href="../../nightly-7?code=k">the report</a>' in page
