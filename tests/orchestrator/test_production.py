"""What holds in production (issue 12): bounded durations, the completion backstop, unknown pools, Batch
outages, one job's failure in a sweep, preparation failing everywhere, secrets in saved requests."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import pytest

from shared.flows.submit import AlreadySubmitted, RequestRejected, Submitted, on_message, submit
from shared.flows.watchdog import Watchdog
from shared.pure import blob_layout as layout
from shared.pure.retry import ATTEMPTS, ORIGINAL_ID, REASON, Resend
from tests.orchestrator.conftest import request, sb_message
from tests.orchestrator.test_flow import job_state, new_id, send
from tests.orchestrator.test_rejections import rejected_for, scheduled_resends
from tests.waiting import wait_until


def test_a_request_too_long_or_overflowing_is_rejected_naming_the_rule(app, svc):
    for timeout in ("P500000W", "P366D"):
        message_id = uuid.uuid4().hex
        app["submit"](sb_message(request(new_id("long"), pool="pool-empty", tasks=1, timeout=timeout), message_id))
        record = rejected_for(svc, message_id)
        assert record["errors"] == [{"field": "timeout", "rule": "timeout_too_long",
                                     "message": "must be at most P365D (one year)"}]


def test_an_unknown_pool_is_refused_at_submit(app, svc):
    job_id, message_id = new_id("nopool"), uuid.uuid4().hex
    app["submit"](sb_message(request(job_id, pool="no-such-pool", tasks=1), message_id))
    record = rejected_for(svc, message_id)
    assert "[pool_not_found]" in record["reason"] and record["jobId"] == job_id
    assert svc.batch.get_job(job_id) is None, "no job holding quota until its deadline"


def test_a_batch_outage_schedules_the_request_again_instead_of_dead_lettering(app, svc, batch_emulator, servicebus):
    job_id, message_id = new_id("outage"), uuid.uuid4().hex
    batch_emulator.set_faults(rate=1.0, statuses=[503], retryAfter=0)
    try:
        app["submit"](sb_message(request(job_id, pool="pool-empty", tasks=1), message_id))  # does not raise
    finally:
        batch_emulator.set_faults(rate=0.0)
    ((resend_id, again),) = scheduled_resends(servicebus, message_id)
    assert (again[ATTEMPTS], again[REASON]) == (1, "transient") and resend_id.startswith(f"{message_id}~retry1-")
    assert not svc.store.rejected(layout.rejection_prefix(message_id))
    # The re-sent message, delivered later, carries the lineage: the same job, submitted once.
    result = on_message(json.dumps(request(job_id, pool="pool-empty", tasks=1)).encode(), resend_id,
                        again, datetime.now(UTC), svc)
    assert isinstance(result, Submitted) and result.job_id == job_id


def test_retries_of_a_long_outage_stop_at_the_policy_limit(app, svc, batch_emulator):
    from shared.pure.retry import POLICIES, TRANSIENT, body_digest, resend, resend_record

    limit = POLICIES[TRANSIENT].attempts
    assert isinstance(resend("m", {ATTEMPTS: limit - 1}, datetime.now(UTC), TRANSIENT), Resend)
    assert resend("m", {ATTEMPTS: limit}, datetime.now(UTC), TRANSIENT) is None
    batch_emulator.set_faults(rate=1.0, statuses=[503], retryAfter=0)
    try:
        import pytest

        from shared.adapters.batch import Transient

        last = Resend(f"m-spent-{uuid.uuid4().hex[:8]}~retry{limit}",
                      {ORIGINAL_ID: "m-spent", ATTEMPTS: limit, REASON: TRANSIENT}, datetime.now(UTC), limit, TRANSIENT)
        raw = json.dumps(request(new_id("spent"), pool="pool-empty", tasks=1)).encode()
        svc.store.record_resend(last.message_id, resend_record(last, body_digest(raw)))  # as the orchestrator did
        with pytest.raises(Transient):  # spent: abandoned, and dead-lettered by Service Bus in the end
            on_message(raw, last.message_id, last.properties, datetime.now(UTC), svc)
    finally:
        batch_emulator.set_faults(rate=0.0)


def test_the_watchdog_ends_a_job_batch_left_active_with_every_task_done(own_batch, own_emulator, tmp_path):
    """Batch's onAllTasksComplete missed (the emulator's opt-in mode): the backstop ends the job in a sweep."""
    svc, job_id = own_batch, new_id("missed")
    own_emulator.set_faults(missedCompletion=True)
    raw = json.dumps(request(job_id, tasks=3)).encode()

    def all_done_before_the_patch(added, expected):
        if added == expected:
            wait_until(lambda: svc.batch.task_counts(job_id).completed == 3, 60, what="the tasks to complete")

    submit(raw, "m-missed", svc.batch, svc.store, datetime.now(UTC), progress=all_done_before_the_patch)
    assert job_state(svc, job_id) == "active" and svc.batch.get_job(job_id).on_all_tasks_complete == "terminatejob"
    calls = svc.batch.counter.calls
    sweep = Watchdog(svc.batch, svc.store).sweep(datetime.now(UTC))
    assert dict(sweep.actions) == {"Terminate": 1} and sweep.errors == []
    assert svc.batch.counter.calls - calls == 3, "the list, the task counts, the terminate"
    wait_until(lambda: job_state(svc, job_id) == "completed", 60, what="the job to end")
    assert svc.batch.get_job(job_id).terminate_reason == "AllTasksComplete"


def test_one_jobs_storage_error_does_not_stop_the_sweep(own_batch):
    svc = own_batch
    broken, fine = new_id("broken"), new_id("fine")
    for job_id in (broken, fine):
        send(svc, request(job_id, pool="pool-empty", tasks=1))
        svc.batch.terminate(job_id, "UserTerminate")
    wait_until(lambda: all(job_state(svc, j) == "completed" for j in (broken, fine)), 30, what="both jobs to end")
    svc.store.reports.write(layout.report_name(broken), b"{corrupt")  # the outcome step cannot merge into it
    sweep = Watchdog(svc.batch, svc.store).sweep(datetime.now(UTC))
    assert dict(sweep.actions) == {"RecordOutcome": 1, "Error": 1}
    (error,) = sweep.errors
    assert error.startswith(f"{broken}: JSONDecodeError")
    assert svc.store.outcome(fine)["terminateReason"] == "UserTerminate" and svc.store.outcome(broken) is None


def test_preparation_failing_on_every_node_ends_the_job_at_once_and_is_explained(own_batch):
    svc, job_id = own_batch, new_id("prepfail")
    body = request(job_id, tasks=4)
    body["preparation"] = {"commandLine": "/bin/bash -c 'echo staging; echo \"ERROR: reference data missing, "
                                          "key=s3cr3t\" >&2; exit 3'"}
    send(svc, body)
    wait_until(lambda: sum(1 for n in svc.batch.node_runs(job_id) if n.preparation.result == "failure") == 2, 30,
               what="preparation to fail on both nodes")
    sweep = Watchdog(svc.batch, svc.store).sweep(datetime.now(UTC))  # the clock is not moved: no grace to wait
    assert dict(sweep.actions) == {"Terminate": 1}
    wait_until(lambda: job_state(svc, job_id) == "completed", 30, what="the job to end")
    assert svc.batch.get_job(job_id).terminate_reason == "PrepTaskFailed"
    Watchdog(svc.batch, svc.store).sweep(datetime.now(UTC))
    report = svc.store.report(job_id)
    assert report["collectionComplete"] is True
    for node in report["nodes"]:
        assert (node["status"], node["prepExitCode"], node["prepFailure"]) == (
            "nothing to collect", 3, "FailureExitCode")
    outcome = svc.store.outcome(job_id)
    for node in outcome["nodes"]:
        assert node["prepOutput"]["stdoutTail"] == ["staging"]
        assert node["prepOutput"]["stderrTail"] == ["ERROR: reference data missing, key=REDACTED"]


def test_saved_requests_keep_their_sas_only_where_the_app_alone_reads(own_batch):
    svc, job_id = own_batch, new_id("secret")
    body = request(job_id, pool="pool-empty", tasks=1)
    body["preparation"]["resourceFiles"] = [
        {"httpUrl": "https://acct.blob.core.windows.net/in/tool.sh?sv=2024-05-04&sp=r&sig=TOPSECRET%3D",
         "filePath": "tool.sh"}]
    assert isinstance(send(svc, body), Submitted)
    shown = svc.store.reports.read(layout.request_name(job_id)).decode()
    assert "TOPSECRET" not in shown and "sp=r&sig=REDACTED" in shown
    kept = svc.store.load_request(job_id)
    assert "sig=TOPSECRET%3D" in json.dumps(kept), "the watchdog can still finish the submission as sent"
    assert isinstance(send(svc, body), AlreadySubmitted), "the same request still hashes the same"
    other = dict(body, priority=5)
    assert isinstance(send(svc, other), RequestRejected)


class Killed(BaseException):
    """The process dying at that instant: no handler of the sweep's catches it, nothing after it runs."""


@pytest.mark.parametrize("dies", ["after tasks.jsonl, before the report", "after the report, before the marker"])
def test_a_crash_in_the_outcome_step_is_repaired_by_the_next_sweep(own_batch, monkeypatch, dies):
    import shared.flows.outcome as outcome_step

    svc, job_id = own_batch, new_id("crash")
    send(svc, request(job_id, pool="pool-empty", tasks=2))
    svc.batch.terminate(job_id, "UserTerminate")
    wait_until(lambda: job_state(svc, job_id) == "completed", 30, what="the job to end")

    def die(*_args, **_kwargs):
        raise Killed(dies)

    with monkeypatch.context() as patch:
        if dies.startswith("after tasks.jsonl"):
            patch.setattr(outcome_step, "update_report", die)
        else:
            patch.setattr(svc.store, "write_outcome", die)
        with pytest.raises(Killed):
            Watchdog(svc.batch, svc.store).sweep(datetime.now(UTC))
    assert job_id not in svc.store.recorded_outcomes(), "the marker is the last write"

    sweep = Watchdog(svc.batch, svc.store).sweep(datetime.now(UTC))
    assert dict(sweep.actions) == {"RecordOutcome": 1} and sweep.errors == []
    report = svc.store.report(job_id)
    assert report["outcome"]["terminateReason"] == "UserTerminate"
    assert svc.store.outcome(job_id)["terminateReason"] == "UserTerminate" and job_id in svc.store.recorded_outcomes()
    assert dict(Watchdog(svc.batch, svc.store).sweep(datetime.now(UTC)).actions).get("RecordOutcome") is None
