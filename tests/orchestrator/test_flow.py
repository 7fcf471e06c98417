"""submit -> Batch runs the job -> it ends -> release uploads -> collect -> watchdog outcome -> report.

Tests that sweep with a clock moved ahead run on a Batch emulator of their own (`own_batch`), so the
sweep's actions are theirs alone and are asserted exactly.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from shared.flows import files
from shared.flows.collect import on_crash_dump, on_manifest
from shared.flows.submit import AlreadySubmitted, Submitted, on_message, submit
from shared.flows.watchdog import Watchdog
from shared.pure import metadata
from shared.pure.request import derive_job_id, parse_request
from tests.http_calls import call
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
    """What the blob triggers would be handed, in the order Event Grid might deliver them."""
    names = [b.name for b in svc.store.logs.list(f"{job_id}/")]
    for name in names:
        app["collect_stray"](blob_event(name))
        if "/crashdumps/" in name:
            app["collect_crash_dump"](blob_event(name))
        if name.endswith("/manifest.json"):
            app["collect_node"](blob_event(name))
    return names


def collect_with(svc, job_id: str) -> None:
    """The collect flows with a test's own services (its own Batch emulator), as the triggers run them."""
    now = datetime.now(UTC)
    for blob in svc.store.logs.list(f"{job_id}/"):
        if "/crashdumps/" in blob.name:
            on_crash_dump(svc.store.logs, svc.store.reports, blob.name, now)
        elif blob.name.endswith("/manifest.json"):
            on_manifest(svc.store.logs, svc.store.reports, blob.name, now)


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
    collect_with(svc, job_id)

    sweep = Watchdog(svc.batch, svc.store).sweep(datetime.now(UTC))
    assert dict(sweep.actions) == {"RecordOutcome": 1}
    response = call(app["job_report"], f"http://localhost/api/jobs/{job_id}", route_params={"jobId": job_id})
    assert response.status_code == 200
    body = json.loads(response.get_body())
    assert body["outcome"]["terminateReason"] == "AllTasksComplete"
    assert body["outcome"]["taskCounts"]["succeeded"] == 6
    node_rows = {n["nodeId"]: n for n in body["nodes"]}
    assert set(node_rows) == nodes
    for row in node_rows.values():
        assert row["prepExitCode"] == 0 and row["releaseExitCode"] == 0
    assert sum(r["tasksRun"] for r in node_rows.values()) == 6
    assert body["collectionComplete"] is True
    # Every task's stdout and stderr, plus the prep and release tasks' own, on each node: one bundle each.
    assert body["totals"]["files"] == 6 * 2 + 2 * 2 * 2
    stderr = [f for f in files.index(svc.store, job_id) if f.path.startswith("job-1/task-") and
              f.path.endswith("stderr.txt")]
    assert len(stderr) == 6 and all(f.error_lines == 1 for f in stderr)


def test_the_app_collects_through_its_blob_triggers(app, svc):
    """The registered functions end to end on the shared stack: nothing here moves a clock."""
    job_id = new_id("app")
    app["submit"](sb_message(request(job_id, tasks=2)))
    wait_until(lambda: job_state(svc, job_id) == "completed", 60, what="job to complete")
    wait_until(lambda: sum(1 for b in svc.store.logs.list(f"{job_id}/") if b.name.endswith("manifest.json")) == 2,
               30, what="both manifests")
    uploaded = collect_all(app, svc, job_id)
    assert sum(1 for n in uploaded if "/bundles/" in n) == 2, "one bundle per node"
    report = svc.store.report(job_id)
    assert report["totals"]["nodesCollected"] == 2 and report["totals"]["files"] == 2 * 2 + 2 * 2 * 2
    assert report["collectionComplete"] is False, "complete once the watchdog has recorded the outcome"


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


@pytest.mark.parametrize("outcome_first", [False, True], ids=["nodes first", "outcome first"])
def test_failed_tasks_come_with_the_first_error_lines_of_their_logs(own_batch, outcome_first):
    svc, job_id = own_batch, new_id("failing")
    body = request(job_id, tasks=4)
    body["taskFactory"]["commandLine"] = ("/bin/bash -c 'echo working; echo \"ERROR: input {0} is bad, "
                                          "token=abc123\" >&2; exit $(({0} % 2))'")
    assert isinstance(send(svc, body), Submitted)
    wait_until(lambda: job_state(svc, job_id) == "completed", 60, what="job to complete")
    steps = [lambda: collect_with(svc, job_id), lambda: Watchdog(svc.batch, svc.store).sweep(datetime.now(UTC))]
    for step in reversed(steps) if outcome_first else steps:
        step()
    report = svc.store.report(job_id)
    assert report["collectionComplete"] is True
    failed = {t["id"]: t for t in report["tasks"]["failed"]}
    assert set(failed) == {"task-1", "task-3"} and report["tasks"]["failedTotal"] == 2
    assert failed["task-1"]["excerpt"] == ["ERROR: input 1 is bad, token=REDACTED"]
    assert failed["task-1"]["exitCode"] == 1 and failed["task-1"]["nodeId"] in {n["nodeId"] for n in report["nodes"]}
