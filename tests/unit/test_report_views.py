"""The pure pieces of the report page and the HTTP API, by table: time and duration formats, byte ranges,
download names, the jobs list, and the task view's percentiles and lists."""

from __future__ import annotations

import pytest

from shared.pure import downloads, jobs_list
from shared.pure import task_view as tv
from shared.pure.timefmt import seconds_between, show_duration, show_time


@pytest.mark.parametrize(("seconds", "shown"), [
    (None, "-"), (0, "0 ms"), (0.1204, "120 ms"), (3.44, "3.4 s"), (42.4, "42 s"), (59.6, "1 min 00 s"),
    (307, "5 min 07 s"), (3720, "1 h 02 min"), (86400 * 3 + 3600 * 4, "3 d 04 h"), (-5, "-5.0 s"),
])
def test_durations_in_human_units(seconds, shown):
    assert show_duration(seconds) == shown


@pytest.mark.parametrize(("value", "shown"), [
    ("2026-12-01T23:28:05.123456+00:00", "2026-12-01 23:28:05 UTC"),
    ("2026-12-01T23:28:05Z", "2026-12-01 23:28:05 UTC"),
    ("2026-12-02T01:28:05+02:00", "2026-12-01 23:28:05 UTC"),
    ("2026-12-01T23:28:05", "2026-12-01 23:28:05 UTC"),
    (None, "-"), ("", "-"), ("soon", "soon"),
])
def test_times_in_one_format_with_the_zone(value, shown):
    assert show_time(value) == shown


def test_seconds_between_needs_both_ends():
    assert seconds_between("2026-01-01T00:00:00Z", "2026-01-01T00:01:30+00:00") == 90
    assert seconds_between(None, "2026-01-01T00:00:00Z") is None


@pytest.mark.parametrize(("header", "size", "span"), [
    (None, 100, None), ("", 100, None), ("bytes=0-9", 100, (0, 9)), ("bytes=90-", 100, (90, 99)),
    ("bytes=-10", 100, (90, 99)), ("bytes=50-500", 100, (50, 99)), ("bytes=-500", 100, (0, 99)),
    ("bytes=0-1,5-6", 100, None), ("items=0-1", 100, None), ("bytes=9-3", 100, None),
])
def test_byte_ranges(header, size, span):
    got = downloads.byte_range(header, size)
    assert (None if got is None else (got.start, got.end)) == span


@pytest.mark.parametrize(("header", "size"), [("bytes=100-", 100), ("bytes=-0", 100), ("bytes=-1", 0)])
def test_a_range_outside_the_file_is_unsatisfiable(header, size):
    with pytest.raises(downloads.Unsatisfiable) as refused:
        downloads.byte_range(header, size)
    assert str(refused.value) == f"bytes */{size}"


@pytest.mark.parametrize(("path", "ok"), [
    ("job-1/t1/stdout.txt", True), ("job-1/t1/wd/core.12", True), ("../other-job/x", False),
    ("job-1/../../x", False), ("/etc/passwd", False), ("job-1//x", False), ("a\\b", False), ("", False),
    ("job-1/t1/\x00", False),
])
def test_only_stored_paths_are_asked_for(path, ok):
    assert downloads.valid_path(path) is ok


@pytest.mark.parametrize(("node", "ok"), [("tvmps_" + "a" * 64 + "_d", True), ("../x", False), ("a/b", False),
                                          ("", False), ("x" * 129, False)])
def test_node_ids(node, ok):
    assert downloads.valid_node_id(node) is ok


def test_a_download_name_cannot_break_its_header():
    header = downloads.content_disposition('core "1";\r\nX-Evil: 1.gz')
    assert "\r" not in header and "\n" not in header
    assert header == ("attachment; filename=\"core_1_X-Evil_1.gz\"; "
                      "filename*=UTF-8''core%20%221%22%3B%0D%0AX-Evil%3A%201.gz")


def test_download_urls_are_relative_to_the_report_page_and_quoted():
    assert downloads.file_url("j", "n", "job-1/t 1/stdout.txt") == "j/files/n/job-1/t%201/stdout.txt"
    assert downloads.dump_url("j", "ab" * 32) == f"j/dumps/{'ab' * 32}"


def test_jobs_are_listed_newest_first_then_those_only_a_report_knows():
    in_batch = [jobs_list.Known("old", "completed", "2026-01-01T00:00:00+00:00"),
                jobs_list.Known("new", "active", "2026-01-02T00:00:00+00:00")]
    merged = jobs_list.merge(in_batch, ["new", "gone-a", "gone-b", "rejected", "outcomes", "rejected-blobs"])
    assert [(j.job_id, j.state) for j in merged] == [("new", "active"), ("old", "completed"),
                                                     ("gone-b", "deleted"), ("gone-a", "deleted")]


@pytest.mark.parametrize(("query", "ids", "total"), [
    (jobs_list.Query(), ["j4", "j3", "j2", "j1", "j0"], 5),
    (jobs_list.Query(page_size=2, page=2), ["j2", "j1"], 5),
    (jobs_list.Query(page_size=2, page=4), [], 5),
    (jobs_list.Query(state="completed"), ["j3", "j1"], 2),
])
def test_jobs_are_paged_and_filtered_by_state(query, ids, total):
    jobs = [jobs_list.Known(f"j{i}", "completed" if i % 2 else "active", f"2026-01-0{i + 1}T00:00:00+00:00")
            for i in range(5)]
    page, matching = jobs_list.select(jobs_list.merge(jobs, []), query)
    assert [j.job_id for j in page] == ids and matching == total


@pytest.mark.parametrize(("params", "error"), [
    ({"state": "exploded"}, "state: must be one of active"), ({"page": "0"}, "page: at least 1"),
    ({"pageSize": "1000"}, "pageSize: 1 to 200"), ({"page": "x"}, "page and pageSize: must be whole numbers"),
])
def test_bad_list_queries_are_refused_naming_the_parameter(params, error):
    with pytest.raises(jobs_list.BadQuery) as refused:
        jobs_list.parse_query(params)
    assert str(refused.value).startswith(error)


def test_a_listed_job_has_its_outcome_tasks_and_duration():
    report = {"outcome": {"createdAt": "2026-01-01T00:00:00+00:00", "endedAt": "2026-01-01T00:02:00+00:00",
                          "terminateReason": "AllTasksComplete", "taskCounts": {"succeeded": 8, "failed": 0}},
              "collectionComplete": True}
    entry = jobs_list.entry(jobs_list.Known("j", "completed"), report, None)
    assert entry == {"jobId": "j", "state": "completed", "createdAt": "2026-01-01T00:00:00+00:00",
                     "endedAt": "2026-01-01T00:02:00+00:00", "terminateReason": "AllTasksComplete",
                     "taskCounts": {"succeeded": 8, "failed": 0}, "durationSeconds": 120.0,
                     "collectionComplete": True, "report": "jobs/j"}
    page = jobs_list.render_jobs_page(jobs_list.listing([entry], 1, jobs_list.Query()), {"code": "k"})
    assert '<a href="jobs/j?code=k"><code>j</code></a>' in page and "2 min 00 s" in page
    assert '<a href="jobs?state=completed&amp;code=k">completed</a>' in page


def test_a_hostile_job_id_in_the_list_is_escaped():
    entry = jobs_list.entry(jobs_list.Known("<b>x</b>", "active"), None, {"active": 1})
    page = jobs_list.render_jobs_page(jobs_list.listing([entry], 1, jobs_list.Query()))
    assert "<b>x</b>" not in page and "&lt;b&gt;x&lt;/b&gt;" in page


def test_percentiles_are_of_the_tasks_that_succeeded():
    view = tv.TaskView(origin=0, span=1000)
    for i in range(1, 101):
        view.add({"id": f"t{i}", "nodeId": "n", "state": "completed", "exitCode": 0, "result": "success",
                  "start": "1970-01-01T00:00:00Z", "end": f"1970-01-01T00:{i // 60:02d}:{i % 60:02d}Z"})
    view.add({"id": "bad", "nodeId": "n", "state": "completed", "exitCode": 1, "result": "failure",
              "start": "1970-01-01T00:00:00Z", "end": "1970-01-01T00:16:00Z"})
    assert view.ok_percentiles() == {"count": 100, "p50": 50.5, "p90": 90.1, "p99": 99.01, "max": 100.0}


def test_the_buckets_add_up_the_task_time():
    view = tv.TaskView(origin=0, span=240)  # one second per bucket
    view.add({"id": "a", "nodeId": "n", "state": "completed", "exitCode": 0, "start": "1970-01-01T00:00:10.5Z",
              "end": "1970-01-01T00:00:13.5Z"})
    busy = view.buckets["n"].busy()
    assert busy[10:14] == [0.5, 1.0, 1.0, 0.5] and sum(busy) == 3.0


def test_a_nodes_json_file_listing_is_paged():
    from shared.flows.downloads import FILES_PAGE, node_files_page

    listed = ({"path": f"f{i}"} for i in range(FILES_PAGE * 2 + 5))
    first = node_files_page("j", "n", listed, None)
    assert (len(first["files"]), first["nextPage"]) == (FILES_PAGE, 2)
    last = node_files_page("j", "n", ({"path": f"f{i}"} for i in range(FILES_PAGE * 2 + 5)), "3")
    assert [f["path"] for f in last["files"]] == [f"f{i}" for i in range(FILES_PAGE * 2, FILES_PAGE * 2 + 5)]
    assert "nextPage" not in last


def test_a_saved_request_without_a_job_or_report_is_not_listed_as_deleted():
    waiting = jobs_list.entry(jobs_list.Known("queued", jobs_list.DELETED), None, None)
    gone = jobs_list.entry(jobs_list.Known("old", jobs_list.DELETED), {"outcome": {"terminateReason": "x"}}, None)
    assert (waiting["state"], gone["state"]) == (jobs_list.NOT_CREATED, jobs_list.DELETED)
