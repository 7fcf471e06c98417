"""The report page in headless Chromium, for a job that succeeded, one that crashed, one that ran out of time
and one whose preparation failed: it renders (a screenshot of each under the test's temp folder), every
link on it resolves with the page's own authorization, the CSP holds, and a hostile file name stays text."""

from __future__ import annotations

import base64
import json
import uuid

import pytest
from azure.batch.models import BatchPoolCreateOptions

from shared.pure.report import is_final
from tests.e2e.test_local_stack import EXAMPLE
from tests.unit.dumps import elf_core
from tests.waiting import wait_until

HOSTILE = '"><img src=x onerror=alert(1)><b>bold.log'  # no "/": a file name
CORE = base64.b64encode(elf_core(exe="solver", signal=11)).decode()
LATE_POOL = "late-pool"


def _body(job_id: str, **changes) -> dict:
    body = json.loads(EXAMPLE.read_text())
    body.update(jobId=job_id, **changes)
    return body


def scenarios(run: str) -> dict[str, dict]:
    factory = json.loads(EXAMPLE.read_text())["taskFactory"]
    crash = {**factory, "start": 1, "end": 3, "commandLine": (
        "/bin/bash -c 'echo task {0}; if [ {0} = 1 ]; then echo hostile > \"\\\"><img src=x onerror=alert(1)><b>"
        "bold.log\"; fi; if [ {0} = 2 ]; then echo \"ERROR: segfault coming, token=abc123\" >&2; "
        "printf \"./solver(compute+0x1d)[0x55d4c3a0b1d9]\\n./solver(main+0x30)[0x55d4c3a0b200]\\n\" >&2; "
        f"echo {CORE} | base64 -d > core.{{0}}; exit 3; fi'")}
    prep_failed = {"commandLine": "/bin/bash -c 'echo staging; echo \"ERROR: reference data missing\" >&2; exit 3'"}
    timeout = {**factory, "start": 1, "end": 10, "commandLine": "/bin/bash -c 'sleep 300'"}
    return {
        "success": _body(f"ok-{run}"),
        "crash": _body(f"crash-{run}", taskFactory=crash, collect={"logs": ["job-1/*/wd/*.log"],
                                                                   "crashDumps": ["job-1/*/wd/core*"]}),
        "prep-failure": _body(f"prep-{run}", preparation=prep_failed),
        "timeout": _body(f"late-{run}", timeout="PT20S", taskFactory=timeout, poolId=LATE_POOL),
    }


@pytest.fixture(scope="module")
def jobs(stack, services):
    """The four jobs, each to its final report. The one that runs out of time holds every slot of its pool until
    its deadline, so it has a pool of its own, the size of the stack's (2 nodes of 1 slot: 2 of its tasks run, 8
    never start), and runs beside the other three instead of after them, some 12 s sooner."""
    batch = stack.batch_endpoint.client()
    try:
        batch.create_pool(BatchPoolCreateOptions(id=LATE_POOL, vm_size="standard_d2s_v3", target_dedicated_nodes=2,
                                                 task_slots_per_node=1))
    finally:
        batch.close()
    bodies = scenarios(uuid.uuid4().hex[:6])
    for body in bodies.values():
        services.queue.send(json.dumps(body).encode(), uuid.uuid4().hex)
    for name, body in bodies.items():
        wait_until(lambda job_id=body["jobId"]: is_final(services.store.report(job_id)), 180, 0.5,
                   what=f"the {name} job's report to be final")
    return {name: body["jobId"] for name, body in bodies.items()}


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1300, "height": 900})
    opened = context.new_page()
    opened.dialogs = []
    opened.on("dialog", lambda dialog: (opened.dialogs.append(dialog.message), dialog.dismiss()))
    yield opened
    context.close()


def open_report(page, stack, job_id: str, shot) -> dict:
    response = page.goto(f"{stack.host_url}/api/jobs/{job_id}?code=local-key")
    assert response.status == 200
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["content-security-policy"].startswith("default-src 'none'")
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    return {"text": " ".join(page.inner_text("body").split()),
            "links": page.eval_on_selector_all("a", "links => links.map(a => a.href)")}


def assert_links_resolve(page, links: list[str]) -> None:
    for link in links:
        assert link.endswith("?code=local-key"), link
        got = page.request.get(link)
        assert got.status == 200, (link, got.status, got.text()[:200])


@pytest.mark.parametrize("scenario", ["success", "crash", "timeout", "prep-failure"])
def test_the_report_page_renders_and_its_links_resolve(page, stack, jobs, scenario, tmp_path):
    seen = open_report(page, stack, jobs[scenario], tmp_path / f"{scenario}.png")
    text = seen["text"]
    assert f"Job {jobs[scenario]}" in text
    if scenario == "success":
        assert "Every task completed successfully." in text
        assert page.locator("svg rect title").count() >= 8, "a bar per task, with its tooltip"
    elif scenario == "crash":
        assert "1 task failed: see Failed tasks below for its exit code" in text and "1 crash dump was collected" in text
        assert "ERROR: segfault coming, token=REDACTED" in text and "abc123" not in text
        assert text.count("compute+0x1d") == 3, "where it crashed: for the failed task, its crash group, by frame"
        assert any("/dumps/" in link for link in seen["links"])
    elif scenario == "timeout":
        assert "The job ran out of time: the orchestrator ended it at its deadline" in text
        assert "2 tasks were still running and stopped with the job" in text and "8 tasks never started" in text, text
    else:
        assert ("The job was ended because its preparation task failed on every node of the pool" in text)
        assert "Preparation failed on node" in text and "ERROR: reference data missing" in text
    # A node whose preparation failed ran no release task: nothing was collected to link (its output's tail is
    # on the page itself).
    assert bool(seen["links"]) is (scenario != "prep-failure"), seen["links"]
    assert_links_resolve(page, seen["links"])
    assert page.dialogs == []


def test_a_hostile_file_name_stays_text_on_the_node_listing(page, stack, jobs, tmp_path):
    seen = open_report(page, stack, jobs["crash"], tmp_path / "crash-report.png")
    for listing in [link for link in seen["links"] if link.split("?")[0].rsplit("/", 2)[-2] == "files"]:
        page.goto(listing)
        if HOSTILE not in page.inner_text("body"):
            continue
        page.screenshot(path=str(tmp_path / "hostile-listing.png"), full_page=True)
        assert page.locator("img").count() == 0 and page.locator("b").count() == 0
        link = page.get_by_role("link", name=f"job-1/task-1/wd/{HOSTILE}")
        assert link.count() == 1
        served = page.request.get(link.evaluate("a => a.href"))
        assert served.status == 200 and served.text() == "hostile\n"
        assert page.dialogs == []
        return
    raise AssertionError("no node listing shows the hostile file")


def test_the_jobs_list_links_each_report(page, stack, jobs, tmp_path):
    response = page.goto(f"{stack.host_url}/api/jobs?code=local-key")
    assert response.status == 200 and response.headers["content-security-policy"].startswith("default-src 'none'")
    page.screenshot(path=str(tmp_path / "jobs.png"), full_page=True)
    rows = {row.locator("td").first.inner_text(): " ".join(row.inner_text().split())
            for row in page.locator("tbody tr").all()}
    assert set(jobs.values()) <= set(rows)
    assert "OrchestratorTimeout" in rows[jobs["timeout"]] and "PrepTaskFailed" in rows[jobs["prep-failure"]]
    assert "AllTasksComplete" in rows[jobs["success"]]
    page.get_by_role("link", name=jobs["crash"], exact=True).click()
    page.wait_for_load_state()
    assert page.url == f"{stack.host_url}/api/jobs/{jobs['crash']}?code=local-key"
    assert page.locator("h1").inner_text() == f"Job {jobs['crash']}"
    page.goto(f"{stack.host_url}/api/jobs?state=completed&code=local-key")
    assert page.get_by_role("link", name="completed").count() == 0, "the current filter is not a link"
