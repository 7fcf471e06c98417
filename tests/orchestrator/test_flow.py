"""submit -> Batch runs the job -> it ends -> release uploads -> collect -> watchdog outcome -> report."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import azure.functions as func
import pytest

from shared import metadata as md
from shared.watchdog import Watchdog
from shared.watchdog_policy import Policy
from tests.orchestrator.conftest import blob_event, request, sb_message
from tests.waiting import wait_until


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def job_state(svc, job_id):
    job = svc.batch.get_job(job_id)
    return job and job["state"]


def collect_all(app, svc, job_id: str) -> list[str]:
    names = [b.name for b in svc.store.logs.list_blobs(name_starts_with=f"{job_id}/")]
    for name in names:
        app["collect_log"](blob_event(name))
        if "/crashdumps/" in name:
            app["collect_crash_dump"](blob_event(name))
    return names


def test_request_becomes_job_logs_and_report(app, svc):
    job_id = new_id("flow")
    app["submit"](sb_message(request(job_id, tasks=6)))
    job = svc.batch.get_job(job_id)
    meta = md.decode(md.as_dict(job["metadata"]))
    assert meta.submitted and meta.expected_tasks == 6
    assert job["onAllTasksComplete"] == "terminatejob"
    wait_until(lambda: job_state(svc, job_id) == "completed", 60, what="job to complete")
    assert svc.batch.get_job(job_id)["executionInfo"]["terminateReason"] == "AllTasksComplete"

    names = wait_until(lambda: [n for n in (b.name for b in svc.store.logs.list_blobs(name_starts_with=job_id))
                                if n.endswith("manifest.json")], 30, what="manifests")
    nodes = {n.split("/")[1] for n in names}
    assert len(nodes) == 2, "each node that ran the job uploaded its files"
    uploaded = collect_all(app, svc, job_id)
    assert any(n.endswith("/stdout.txt") for n in uploaded)

    report = Watchdog(svc.batch, svc.store).sweep(datetime.now(UTC))
    assert report.actions["RecordOutcome"] >= 1
    response = app["job_report"](func.HttpRequest("GET", f"/api/jobs/{job_id}", route_params={"jobId": job_id},
                                                  body=b""))
    assert response.status_code == 200
    body = json.loads(response.get_body())
    assert body["outcome"]["terminateReason"] == "AllTasksComplete"
    assert body["outcome"]["taskCounts"]["succeeded"] == 6
    node_rows = {n["nodeId"]: n for n in body["nodes"]}
    assert set(node_rows) == nodes
    for row in node_rows.values():
        assert row["prepExitCode"] == 0 and row["releaseExitCode"] == 0
    assert sum(len(r["tasks"]) for r in node_rows.values()) == 6
    assert body["collectionComplete"] is True
    stderr = [f for f in body["files"] if "/task-" in f["path"] and f["path"].endswith("stderr.txt")]
    assert len(stderr) == 6 and all(f["errorLines"] == 1 for f in stderr)


def test_duplicate_message_gives_one_job_and_each_task_once(app, svc):
    job_id = new_id("dup")
    body = request(job_id, pool="pool-empty", tasks=150)
    message_id = uuid.uuid4().hex
    app["submit"](sb_message(body, message_id))
    app["submit"](sb_message(body, message_id))
    assert svc.batch.task_counts(job_id)["active"] == 150
    assert len(svc.batch.tasks(job_id)) == 150


def test_job_id_derived_from_message_id_is_stable(app, svc):
    body = request("ignored", pool="pool-empty", tasks=1)
    del body["jobId"]
    message_id = uuid.uuid4().hex
    app["submit"](sb_message(body, message_id))
    from shared.request import derive_job_id
    assert svc.batch.get_job(derive_job_id(message_id)) is not None


def test_crash_between_chunks_then_redelivery_finishes(app, svc):
    from shared.request import parse_request
    from shared.submit import submit

    job_id = new_id("crash")
    raw = json.dumps(request(job_id, pool="pool-empty", tasks=350)).encode()

    class Crash(Exception):
        pass

    def crash_after_first_chunk(added, expected):
        raise Crash(f"simulated crash after {added} of {expected}")

    with pytest.raises(Crash):
        submit(raw, "m-crash", svc.batch, svc.store, datetime.now(UTC), concurrency=1,
               progress=crash_after_first_chunk)
    job = svc.batch.get_job(job_id)
    assert not md.decode(md.as_dict(job["metadata"])).submitted
    assert job["onAllTasksComplete"] == "noaction", "a half-filled job must not end early"
    assert 0 < svc.batch.task_counts(job_id)["active"] < 350
    app["submit"](sb_message(raw, "m-crash"))
    job = svc.batch.get_job(job_id)
    assert md.decode(md.as_dict(job["metadata"])).submitted
    assert svc.batch.task_counts(job_id)["active"] == 350
    assert parse_request(raw).task_count() == 350


def test_watchdog_finishes_an_abandoned_submission(app, svc):
    from shared.submit import submit

    job_id = new_id("abandoned")
    raw = json.dumps(request(job_id, pool="pool-empty", tasks=120)).encode()

    def crash(added, expected):
        raise RuntimeError("process died")

    with pytest.raises(RuntimeError):
        submit(raw, "m-abandoned", svc.batch, svc.store, datetime.now(UTC), concurrency=1, progress=crash)
    Watchdog(svc.batch, svc.store).sweep(datetime.now(UTC) + timedelta(minutes=11))
    job = svc.batch.get_job(job_id)
    assert md.decode(md.as_dict(job["metadata"])).submitted
    assert svc.batch.task_counts(job_id)["active"] == 120


def test_deadline_passed_terminates_with_orchestrator_timeout(app, svc):
    job_id = new_id("late")
    app["submit"](sb_message(request(job_id, pool="pool-empty", tasks=2)))
    report = Watchdog(svc.batch, svc.store).sweep(datetime.now(UTC) + timedelta(hours=1))
    assert report.actions["Terminate"] >= 1
    wait_until(lambda: job_state(svc, job_id) == "completed", 30, what="job to complete")
    assert svc.batch.get_job(job_id)["executionInfo"]["terminateReason"] == "OrchestratorTimeout"


def test_failing_prep_everywhere_is_terminated(app, svc):
    job_id = new_id("badprep")
    body = request(job_id, tasks=2)
    body["preparation"] = {"commandLine": "/bin/false"}
    app["submit"](sb_message(body))
    wait_until(lambda: len([s for s in svc.batch.prep_status(job_id)
                            if s["jobPreparationTaskExecutionInfo"].get("result") == "failure"]) == 2,
               30, what="prep to fail on both nodes")
    policy = Policy(prep_check_after=timedelta(0), prep_check_interval=timedelta(minutes=1),
                    prep_failure_grace=timedelta(minutes=5))
    Watchdog(svc.batch, svc.store, policy).sweep(datetime.now(UTC) + timedelta(minutes=6))
    wait_until(lambda: job_state(svc, job_id) == "completed", 30, what="job to complete")
    assert svc.batch.get_job(job_id)["executionInfo"]["terminateReason"] == "PrepTaskFailed"


def test_retention_deletes_completed_jobs_after_outcome(app, svc):
    job_id = new_id("old")
    body = request(job_id, pool="pool-empty", tasks=1)
    app["submit"](sb_message(body))
    svc.batch.terminate(job_id, "UserTerminate")
    wait_until(lambda: job_state(svc, job_id) == "completed", 30, what="job to complete")
    dog = Watchdog(svc.batch, svc.store)
    dog.sweep(datetime.now(UTC))
    assert svc.store.outcome(job_id)["terminateReason"] == "UserTerminate"
    dog.sweep(datetime.now(UTC) + timedelta(days=8))
    wait_until(lambda: svc.batch.get_job(job_id) is None, 30, what="job deleted")
    assert svc.store.report(job_id) is not None, "the report outlives the Batch job"
