"""submit -> Batch runs the job -> it ends -> release uploads -> collect -> watchdog outcome -> report.

Tests that sweep with a clock moved ahead run on a Batch emulator of their own (`own_batch`), so the
sweep's actions are theirs alone and are asserted exactly.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import azure.functions as func
import pytest

from shared.flows.submit import AlreadySubmitted, Submitted, on_message, submit
from shared.flows.watchdog import Watchdog
from shared.pure import metadata
from shared.pure.request import derive_job_id, parse_request
from shared.pure.watchdog_policy import Policy
from tests.orchestrator.conftest import blob_event, request, sb_message
from tests.waiting import wait_until


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def job_state(svc, job_id):
    job = svc.batch.get_job(job_id)
    return job and job.state


def submitted(job) -> bool:
    return metadata.decode(job.metadata).submitted


def collect_all(app, svc, job_id: str) -> list[str]:
    names = [b.name for b in svc.store.logs.list(f"{job_id}/")]
    for name in names:
        app["collect_log"](blob_event(name))
        if "/crashdumps/" in name:
            app["collect_crash_dump"](blob_event(name))
    return names


def send(services, body: dict | bytes, message_id: str | None = None, now: datetime | None = None):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return on_message(raw, message_id or uuid.uuid4().hex, {}, now or datetime.now(UTC), services)


def test_request_becomes_job_logs_and_report(app, own_batch):
    svc, job_id = own_batch, new_id("flow")
    assert isinstance(send(svc, request(job_id, tasks=6)), Submitted)
    job = svc.batch.get_job(job_id)
    meta = metadata.decode(job.metadata)
    assert meta.submitted and meta.expected_tasks == 6
    assert job.on_all_tasks_complete == "terminatejob"
    wait_until(lambda: job_state(svc, job_id) == "completed", 60, what="job to complete")
    assert svc.batch.get_job(job_id).terminate_reason == "AllTasksComplete"

    names = wait_until(lambda: [b.name for b in svc.store.logs.list(f"{job_id}/") if b.name.endswith("manifest.json")],
                       30, what="manifests")
    nodes = {n.split("/")[1] for n in names}
    assert len(nodes) == 2, "each node that ran the job uploaded its files"
    # The app's collect functions on the shared stack's Batch would not know this job's nodes: run the
    # collect flow with this test's services, as the trigger does.
    from shared.flows.collect import on_blob
    for blob in svc.store.logs.list(f"{job_id}/"):
        on_blob(svc, blob.name, crash_dump_trigger=False)

    sweep = Watchdog(svc.batch, svc.store).sweep(datetime.now(UTC))
    assert dict(sweep.actions) == {"RecordOutcome": 1}
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


def test_the_app_collects_through_its_blob_triggers(app, svc):
    """The registered functions end to end on the shared stack: nothing here moves a clock."""
    job_id = new_id("app")
    app["submit"](sb_message(request(job_id, tasks=2)))
    wait_until(lambda: job_state(svc, job_id) == "completed", 60, what="job to complete")
    wait_until(lambda: sum(1 for b in svc.store.logs.list(f"{job_id}/") if b.name.endswith("manifest.json")) == 2,
               30, what="both manifests")
    uploaded = collect_all(app, svc, job_id)
    assert sum(1 for n in uploaded if n.endswith("/stdout.txt")) == 2 + 2 + 2  # tasks, prep and release on 2 nodes
    report = svc.store.report(job_id)
    assert report["collectionComplete"] is True
    assert report["totals"]["nodesCollected"] == 2


def test_duplicate_message_gives_one_job_and_each_task_once(app, svc):
    job_id = new_id("dup")
    body = request(job_id, pool="pool-empty", tasks=150)
    message_id = uuid.uuid4().hex
    app["submit"](sb_message(body, message_id))
    app["submit"](sb_message(body, message_id))
    assert svc.batch.task_counts(job_id).active == 150
    assert len(list(svc.batch.tasks(job_id))) == 150


def test_job_id_derived_from_message_id_is_stable(app, svc):
    body = request("ignored", pool="pool-empty", tasks=3)
    del body["jobId"]
    message_id = uuid.uuid4().hex
    first = send(svc, body, message_id)
    again = send(svc, body, message_id)  # a redelivery of the same message
    other = send(svc, body, uuid.uuid4().hex)
    assert isinstance(first, Submitted) and first.job_id == derive_job_id(message_id)
    assert again == AlreadySubmitted(first.job_id)
    assert isinstance(other, Submitted) and other.job_id != first.job_id
    assert svc.batch.task_counts(first.job_id).active == 3, "each task once"


def test_crash_between_chunks_then_redelivery_finishes(app, svc):
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
    assert not submitted(job)
    assert job.on_all_tasks_complete == "noaction", "a half-filled job must not end early"
    assert 0 < svc.batch.task_counts(job_id).active < 350
    app["submit"](sb_message(raw, "m-crash"))
    assert submitted(svc.batch.get_job(job_id))
    assert svc.batch.task_counts(job_id).active == 350
    assert parse_request(raw).task_count() == 350


def test_watchdog_finishes_an_abandoned_submission(own_batch):
    svc, job_id = own_batch, new_id("abandoned")
    raw = json.dumps(request(job_id, pool="pool-empty", tasks=120)).encode()

    def crash(added, expected):
        raise RuntimeError("process died")

    with pytest.raises(RuntimeError):
        submit(raw, "m-abandoned", svc.batch, svc.store, datetime.now(UTC), concurrency=1, progress=crash)
    sweep = Watchdog(svc.batch, svc.store).sweep(datetime.now(UTC) + timedelta(minutes=11))
    assert dict(sweep.actions) == {"FinishSubmission": 1} and sweep.errors == []
    assert submitted(svc.batch.get_job(job_id))
    assert svc.batch.task_counts(job_id).active == 120


def test_deadline_passed_terminates_with_orchestrator_timeout(own_batch):
    svc, job_id = own_batch, new_id("late")
    send(svc, request(job_id, pool="pool-empty", tasks=2))
    sweep = Watchdog(svc.batch, svc.store).sweep(datetime.now(UTC) + timedelta(hours=1))
    assert dict(sweep.actions) == {"Terminate": 1}
    wait_until(lambda: job_state(svc, job_id) == "completed", 30, what="job to complete")
    assert svc.batch.get_job(job_id).terminate_reason == "OrchestratorTimeout"


def test_failing_prep_everywhere_is_terminated(own_batch):
    svc, job_id = own_batch, new_id("badprep")
    body = request(job_id, tasks=2)
    body["preparation"] = {"commandLine": "/bin/false"}
    send(svc, body)
    wait_until(lambda: sum(1 for n in svc.batch.node_runs(job_id) if n.preparation.result == "failure") == 2,
               30, what="prep to fail on both nodes")
    rules = Policy(prep_check_after=timedelta(0), prep_check_interval=timedelta(minutes=1),
                   prep_failure_grace=timedelta(minutes=5))
    sweep = Watchdog(svc.batch, svc.store, rules).sweep(datetime.now(UTC) + timedelta(minutes=6))
    assert dict(sweep.actions) == {"Terminate": 1}
    wait_until(lambda: job_state(svc, job_id) == "completed", 30, what="job to complete")
    assert svc.batch.get_job(job_id).terminate_reason == "PrepTaskFailed"


def test_retention_deletes_completed_jobs_after_outcome(own_batch):
    svc, job_id = own_batch, new_id("old")
    send(svc, request(job_id, pool="pool-empty", tasks=1))
    svc.batch.terminate(job_id, "UserTerminate")
    wait_until(lambda: job_state(svc, job_id) == "completed", 30, what="job to complete")
    dog = Watchdog(svc.batch, svc.store)
    assert dict(dog.sweep(datetime.now(UTC)).actions) == {"RecordOutcome": 1}
    assert svc.store.outcome(job_id)["terminateReason"] == "UserTerminate"
    assert dict(dog.sweep(datetime.now(UTC) + timedelta(days=8)).actions) == {"Delete": 1}
    wait_until(lambda: svc.batch.get_job(job_id) is None, 30, what="job deleted")
    assert svc.store.report(job_id) is not None, "the report outlives the Batch job"
