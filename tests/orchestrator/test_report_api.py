"""The HTTP API a user reads a job through: the jobs list, the report page and every link on it, served by
the registered functions from what the real collection wrote (Batch emulator, Azurite), with the payload
objects the worker passes."""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import re
import subprocess
import tracemalloc
import uuid
from datetime import UTC, datetime
from html import unescape
from urllib.parse import unquote, urljoin, urlsplit

import pytest

from shared.adapters import services as services_module
from shared.flows import files
from shared.flows.watchdog import Watchdog
from shared.pure.report import is_final
from tests.http_calls import Answer, call
from tests.orchestrator.conftest import request, sb_message
from tests.orchestrator.test_flow import collect_all, job_state
from tests.unit.dumps import elf_core
from tests.waiting import wait_until

ROUTES = [  # (function, route regex): as the host routes them
    ("jobs_list", r"/api/jobs"),
    ("job_report", r"/api/jobs/(?P<jobId>[^/]+)"),
    ("job_file", r"/api/jobs/(?P<jobId>[^/]+)/files/(?P<nodeId>[^/]+)(?:/(?P<path>.*))?"),
    ("job_dump", r"/api/jobs/(?P<jobId>[^/]+)/dumps/(?P<sha256>[^/]+)"),
]


def get(app, url: str, headers: dict | None = None) -> Answer:
    """GET a URL as the host would route it to a function (route params unquoted, query as sent)."""
    path = unquote(urlsplit(url).path)
    for name, pattern in ROUTES:
        match = re.fullmatch(pattern, path)
        if match:
            params = {k: v for k, v in match.groupdict().items() if v is not None}
            return call(app[name], url, headers, params)
    raise AssertionError(f"no function serves {url}")


def hrefs(page: str) -> list[str]:
    return [unescape(h) for h in re.findall(r'href="([^"]*)"', page)]


CORE = elf_core(exe="solver", signal=11)
# What a native solver's SIGSEGV handler prints (glibc's backtrace_symbols_fd) before it dumps core.
BACKTRACE = "./solver(compute+0x1d)[0x55d4c3a0b1d9]\n./solver(main+0x30)[0x55d4c3a0b200]\n"
STDERR = b"ERROR: bad input, password=hunter2\n" + BACKTRACE.encode()


@pytest.fixture(scope="module")
def crashed_job(app, app_env):
    """A job whose task 2 prints a backtrace, writes a core dump and fails, collected and its outcome
    recorded."""
    svc = services_module.services()
    job_id = f"pageapi-{uuid.uuid4().hex[:8]}"
    core = base64.b64encode(CORE).decode()
    body = request(job_id, tasks=3)
    body["taskFactory"]["commandLine"] = (
        "/bin/bash -c 'echo task {0}; if [ {0} = 2 ]; then echo \"ERROR: bad input, password=hunter2\" >&2; "
        f"printf \"{BACKTRACE.encode('unicode_escape').decode()}\" >&2; "
        f"echo {core} | base64 -d > core.{{0}}; exit 3; fi'")
    app["submit"](sb_message(body))
    wait_until(lambda: job_state(svc, job_id) == "completed", 90, what="the job to complete")
    wait_until(lambda: sum(1 for b in svc.store.logs.list(f"{job_id}/") if b.name.endswith("manifest.json")) == 2,
               60, what="both manifests")
    collect_all(app, svc, job_id)

    def final():
        Watchdog(svc.batch, svc.store).sweep(datetime.now(UTC))
        return is_final(svc.store.report(job_id))

    wait_until(final, 60, 0.5, what="the outcome to be recorded and collection complete")
    return job_id


def test_the_report_page_links_every_log_and_dump_and_each_resolves(app, svc, crashed_job):
    job_id = crashed_job
    page_url = f"http://localhost/api/jobs/{job_id}?format=html&code=k"
    response = get(app, page_url)
    assert response.status_code == 200
    assert response.headers["Content-Security-Policy"].startswith("default-src 'none'; style-src 'unsafe-inline'")
    page = response.get_body().decode()
    assert "<svg" in page and "each task a bar (3 tasks ran)" in page
    assert "<pre>ERROR: bad input, password=REDACTED</pre>" in page and "hunter2" not in page
    assert "1 task failed" in page and "<code>task-2</code>" in page
    links = [h for h in hrefs(page)]
    assert links and all(h.endswith("?code=k") for h in links), "every link keeps the page's authorization"
    kinds = {"stderr": 0, "dump": 0, "node": 0}
    for link in links:
        resolved = urljoin(page_url, link)
        served = get(app, resolved)
        assert served.status_code == 200, (resolved, served.get_body()[:200])
        if "/dumps/" in resolved:
            kinds["dump"] += 1
            # The copy recorded first: the failing task's own upload (as it was) or the release task's (gzip'd).
            gzipped = served.headers["Content-Type"] == "application/gzip"
            assert (gzip.decompress(served.get_body()) if gzipped else served.get_body()) == CORE
            assert served.headers["Content-Disposition"].startswith(
                f'attachment; filename="core.2{".gz" if gzipped else ""}"')
        elif resolved.split("?")[0].endswith("/job-1/task-2/stderr.txt"):
            kinds["stderr"] += 1
            assert served.get_body() == STDERR
            assert served.headers["Content-Security-Policy"] == "default-src 'none'; sandbox"
        elif re.search(r"/files/[^/]+$", resolved.split("?")[0]):
            kinds["node"] += 1
            listing = served.get_body().decode()
            assert "job-1/task-" in listing
            for inner in hrefs(listing):
                assert get(app, urljoin(resolved, inner)).status_code == 200, inner
    # task-2's stderr twice: its row in the failed tasks, and its crash group's backtrace.
    assert kinds == {"stderr": 2, "dump": 1, "node": 2}


def test_a_file_is_served_in_parts_by_range(app, crashed_job):
    report_page = get(app, f"http://localhost/api/jobs/{crashed_job}?format=html").get_body().decode()
    link = next(h for h in hrefs(report_page) if h.endswith("task-2/stderr.txt"))
    url = urljoin(f"http://localhost/api/jobs/{crashed_job}", link)
    part = get(app, url, {"Range": "bytes=7-9"})
    assert part.status_code == 206 and part.get_body() == b"bad"
    assert part.headers["Content-Range"] == f"bytes 7-9/{len(STDERR)}" and part.headers["Accept-Ranges"] == "bytes"
    beyond = get(app, url, {"Range": f"bytes={len(STDERR)}-"})
    assert beyond.status_code == 416 and beyond.headers["Content-Range"] == f"bytes */{len(STDERR)}"


def test_the_crash_group_and_the_failed_task_say_where_it_crashed(app, svc, crashed_job):
    report = json.loads(get(app, f"http://localhost/api/jobs/{crashed_job}").get_body())
    (task,) = report["tasks"]["failed"]
    assert (task["id"], task["backtrace"]) == ("task-2", {"kind": None, "frame": "compute+0x1d (solver)"})
    (group,) = report["crashGroups"]
    assert (group["count"], group["executable"], group["backtrace"]) == (1, "solver", {
        "kind": None, "frame": "compute+0x1d (solver)", "taskId": "task-2", "nodeId": task["nodeId"],
        "log": "stderr"})
    page = get(app, f"http://localhost/api/jobs/{crashed_job}?format=html").get_body().decode()
    assert '<td><code>compute+0x1d (solver)</code></td>' in page, "the failed task: crashed at"
    assert (f'<code>compute+0x1d (solver)</code><br><span class="muted">printed in <a href="{crashed_job}/files/'
            f'{task["nodeId"]}/job-1/task-2/stderr.txt">stderr</a> of <code>task-2</code></span>') in page


def test_a_download_reaches_only_the_files_of_the_job_it_names(app, svc, crashed_job):
    node = svc.store.report(crashed_job)["nodes"][0]["nodeId"]
    other = f"other-{uuid.uuid4().hex[:8]}"
    # Route values as any host may hand them over (decoded): none reaches outside the job named.
    for name, route, status in [
        ("job_file", {"jobId": crashed_job, "nodeId": node, "path": f"job-1/../../{other}/x"}, 400),
        ("job_file", {"jobId": crashed_job, "nodeId": node, "path": "../x"}, 400),
        ("job_file", {"jobId": crashed_job, "nodeId": f"../{other}", "path": "x"}, 400),
        ("job_file", {"jobId": f"../{other}", "nodeId": node, "path": "x"}, 400),
        ("job_file", {"jobId": other, "nodeId": node, "path": "job-1/task-2/stderr.txt"}, 404),
        ("job_file", {"jobId": crashed_job, "nodeId": node, "path": "job-1/task-2/nope.txt"}, 404),
        ("job_dump", {"jobId": crashed_job, "sha256": "0" * 64}, 404),
        ("job_dump", {"jobId": crashed_job, "sha256": "../.."}, 400),
    ]:
        served = call(app[name], "http://localhost/", route_params=route)
        assert served.status_code == status, (route, served.get_body()[:200])
    # A crash record that points at another job's blob (written by no collector of ours) is not followed.
    sha = svc.store.report(crashed_job)["crashGroups"][0]["dumps"][0]["sha256"]
    record = svc.store.reports.read_json(f"{crashed_job}/crashdumps/{sha}.json")
    svc.store.reports.write_json(f"{other}/crashdumps/{sha}.json", {**record, "jobId": other})
    stolen = get(app, f"http://localhost/api/jobs/{other}/dumps/{sha}")
    assert stolen.status_code == 404, "the record's blob is under another job's prefix"


def test_the_jobs_list_pages_filters_and_links_each_report(app, crashed_job):
    listed = json.loads(get(app, "http://localhost/api/jobs?state=completed&pageSize=200").get_body())
    mine = next(j for j in listed["jobs"] if j["jobId"] == crashed_job)
    assert mine["state"] == "completed" and mine["terminateReason"] == "AllTasksComplete"
    assert mine["taskCounts"]["failed"] == 1 and mine["taskCounts"]["succeeded"] == 2
    assert mine["durationSeconds"] > 0 and mine["collectionComplete"] is True
    assert all(j["state"] == "completed" for j in listed["jobs"])
    active = json.loads(get(app, "http://localhost/api/jobs?state=active").get_body())
    assert crashed_job not in {j["jobId"] for j in active["jobs"]}
    first = json.loads(get(app, "http://localhost/api/jobs?pageSize=1").get_body())
    assert len(first["jobs"]) == 1 and first["pages"] == first["total"] >= 1

    page = get(app, "http://localhost/api/jobs?state=completed&pageSize=200",
               {"Accept": "text/html"}).get_body().decode()
    link = next(h for h in hrefs(page) if h == f"jobs/{crashed_job}")
    assert get(app, urljoin("http://localhost/api/jobs", link), {"Accept": "text/html"}).status_code == 200
    assert get(app, "http://localhost/api/jobs?state=exploded").status_code == 400


BIG_LINES = 5_500_000  # `seq` of them: 43 MB of stdout, over the 32 MiB a buffered response was held to


def test_a_file_bigger_than_any_buffer_is_streamed_whole_and_in_parts(app, svc):
    """A task's 43 MB stdout, deflated in its node's bundle, downloads whole through the function: in
    body messages of at most 256 KiB, read from storage as they are sent, in bounded memory."""
    job_id = f"bigfile-{uuid.uuid4().hex[:8]}"
    body = request(job_id, tasks=1)
    body["taskFactory"]["commandLine"] = f"/bin/bash -c 'seq 1 {BIG_LINES}'"
    app["submit"](sb_message(body))
    wait_until(lambda: job_state(svc, job_id) == "completed", 90, what="the job to complete")
    wait_until(lambda: any(b.name.endswith("manifest.json") for b in svc.store.logs.list(f"{job_id}/")), 60,
               what="the manifest")
    collect_all(app, svc, job_id)
    expected = subprocess.run(["seq", "1", str(BIG_LINES)], capture_output=True, check=True).stdout
    node = next(f.node_id for f in files.index(svc.store, job_id) if f.path == "job-1/task-1/stdout.txt")
    url = f"http://localhost/api/jobs/{job_id}/files/{node}/job-1/task-1/stdout.txt"

    digest = hashlib.sha256()
    tracemalloc.start()
    try:
        whole = get_streamed(app, url, digest.update)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert whole.status_code == 200 and whole.headers["Content-Length"] == str(len(expected))
    assert digest.hexdigest() == hashlib.sha256(expected).hexdigest()
    assert sum(whole.messages) == len(expected) and max(whole.messages) == 256 * 1024
    assert len(whole.messages) == -(-len(expected) // (256 * 1024))
    # About one GET's worth (files.MAX_FETCH_WINDOW and the SDK's own copies of it), not the file's 43 MB.
    assert peak < 24 * 1024 * 1024, f"{peak} bytes held while streaming {len(expected)}"  # 21.7 MB measured

    tail = get(app, url, {"Range": f"bytes={len(expected) - 16}-"})
    assert tail.status_code == 206 and tail.get_body() == expected[-16:]
    assert tail.headers["Content-Range"] == f"bytes {len(expected) - 16}-{len(expected) - 1}/{len(expected)}"


def get_streamed(app, url: str, sink) -> Answer:
    path = unquote(urlsplit(url).path)
    match = re.fullmatch(ROUTES[2][1], path)
    return call(app["job_file"], url, None, {k: v for k, v in match.groupdict().items() if v}, sink=sink)
