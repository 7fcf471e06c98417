"""Bad and conflicting requests are kept with their reason and settled; the quota only delays."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

from azure.servicebus import ServiceBusClient

from shared.adapters.queue import text_properties
from shared.pure import blob_layout as layout
from shared.pure.retry import ATTEMPTS, ORIGINAL_ID, REASON
from tests.orchestrator.conftest import blob_event, request, sb_message


def rejected_for(svc, message_id: str) -> dict:
    return next(r for r in svc.store.rejected() if r.get("messageId") == message_id)


def test_malformed_json_is_kept_with_its_reason(app, svc):
    message_id = uuid.uuid4().hex
    app["submit"](sb_message(b"{not json", message_id))
    record = rejected_for(svc, message_id)
    assert record["request"] == "{not json"
    assert "invalid request" in record["reason"]


def test_schema_violation_names_field_and_rule(app, svc):
    message_id = uuid.uuid4().hex
    body = request("bad id!", tasks=1)
    body["release"]["maxWallClock"] = "PT20M"
    app["submit"](sb_message(body, message_id))
    record = rejected_for(svc, message_id)
    fields = {e["field"] for e in record["errors"]}
    assert {"jobId", "release.maxWallClock"} <= fields


def test_rejection_is_filed_under_the_jobid_asked_for_without_sas_signatures(app, svc):
    job_id = f"bad-timeout-{uuid.uuid4().hex[:8]}"
    message_id = uuid.uuid4().hex
    body = request(job_id, tasks=1, timeout="soon")
    body["preparation"]["resourceFiles"] = [
        {"httpUrl": "https://acct.blob.core.windows.net/in/tool.sh?sv=2024-05-04&sp=r&sig=TOPSECRET%3D",
         "filePath": "tool.sh"}]
    app["submit"](sb_message(body, message_id))
    record = rejected_for(svc, message_id)
    assert record["jobId"] == job_id
    assert "timeout" in {e["field"] for e in record["errors"]}
    assert "TOPSECRET" not in json.dumps(record)
    assert "sp=r&sig=REDACTED" in record["request"]


def test_conflicting_request_under_existing_job_is_refused(app, svc):
    job_id = f"conflict-{uuid.uuid4().hex[:8]}"
    app["submit"](sb_message(request(job_id, pool="pool-empty", tasks=2)))
    other = uuid.uuid4().hex
    app["submit"](sb_message(request(job_id, pool="pool-empty", tasks=3), other))
    record = rejected_for(svc, other)
    assert "already exists" in record["reason"] and record["jobId"] == job_id
    assert svc.batch.task_counts(job_id).active == 2, "not merged"


def test_quota_reached_schedules_the_request_again(app, svc, batch_emulator, servicebus):
    live = sum(1 for j in svc.batch.list_jobs() if j.state in ("active", "terminating"))
    batch_emulator.set_faults(activeJobQuota=live)
    message_id = uuid.uuid4().hex
    try:
        app["submit"](sb_message(request(f"quota-{uuid.uuid4().hex[:8]}", pool="pool-empty", tasks=1), message_id))
    finally:
        batch_emulator.set_faults(activeJobQuota=300)
    assert not any(r.get("messageId") == message_id for r in svc.store.rejected()), "never rejected for quota"
    (again,) = scheduled_again(servicebus, message_id)
    assert (again[ATTEMPTS], again[REASON]) == (1, "quota")


def scheduled_resends(servicebus, message_id: str) -> list[tuple[str, dict]]:
    """(MessageId, application properties) of the scheduled re-sends of a request, found by its lineage."""
    with ServiceBusClient.from_connection_string(servicebus.connection_string) as client, \
            client.get_queue_receiver("job-requests") as receiver:
        peeked = receiver.peek_messages(max_message_count=250)
    found = []
    for m in peeked:
        props = text_properties(m)
        if props.get(ORIGINAL_ID) == message_id:
            assert m.scheduled_enqueue_time_utc is not None
            found.append((m.message_id, props))
    return found


def scheduled_again(servicebus, message_id: str) -> list[dict]:
    return [props for _, props in scheduled_resends(servicebus, message_id)]


def test_hostile_blob_names_get_records_not_crashes(app, svc):
    for name in ["../../etc/passwd", "job/only-two", "a" * 300 + "/n/logs/x", "j1/n1/logs/\u202eevil.txt"]:
        # Storage itself may refuse to hold such names; the trigger can still be handed one.
        app["collect_stray"](blob_event(name))
    from shared.pure.blob_layout import parse_log_blob, rejected_blob_record_name

    for name in ["../../etc/passwd", "job/only-two", "a" * 300 + "/n/logs/x", "j1/n1/logs/\u202eevil.txt"]:
        record = svc.store.reports.read_json(rejected_blob_record_name(parse_log_blob(name)))
        assert record["rule"] == parse_log_blob(name).rule


HOSTILE = {
    # name as stored -> the rule its record names
    "{job}/n1/../../other/n1/manifest.json": "path_traversal",
    "{job}/n1/crashdumps/20260101T000000Z-0a0b0c0d/line\nbreak": "bad_character",
    "{job}/n1/crashdumps/20260101T000000Z-0a0b0c0d/ctl\x01core": "bad_character",
    "{job}/n1/bundles/bad\uffff.zip": "bad_character",
    "rejected/n1/manifest.json": "reserved_job_id",
    "outcomes/n1/crashdumps/20260101T000000Z-0a0b0c0d/core": "reserved_job_id",
    "{job}/n1/notes.txt": "outside_layout",
}


def test_every_hostile_blob_a_node_can_write_is_accounted_for(app, svc):
    """Each blob, stored under its exact name, runs every trigger whose path matches it (as the host does),
    and ends in one record naming its rule; none lands among the orchestrator's own records."""
    from local.host.blob_trigger import BlobPath
    from shared.pure.blob_layout import parse_log_blob, rejected_blob_record_name
    from tests.fixtures.azurite import put_verbatim

    job = f"hostile-{uuid.uuid4().hex[:8]}"
    triggers = {"collect_node": "{jobId}/{nodeId}/manifest.json", "collect_crash_dump": "{jobId}/{nodeId}/crashdumps/{name}",
                "collect_stray": "{name}"}
    paths = {fn: BlobPath.parse(f"job-logs/{path}") for fn, path in triggers.items()}
    container = svc.store.logs._client
    before = {b.name for b in svc.store.reports.list("rejected/")}
    for template, rule in HOSTILE.items():
        name = template.format(job=job)
        put_verbatim(container, name, b"payload")
        ran = [fn for fn, path in paths.items() if path.matches(name)]
        assert "collect_stray" in ran
        for fn in ran:
            app[fn](blob_event(name))
        bad = parse_log_blob(name)
        assert bad.rule == rule, name
        record = svc.store.reports.read_json(rejected_blob_record_name(bad))
        assert (record["rule"], record["size"]) == (rule, None if rule == "path_traversal" else 7), name
    assert {b.name for b in svc.store.reports.list("rejected/")} == before, "no report among the rejections"
    assert list(svc.store.reports.list("outcomes/n1")) == []


def test_a_forged_lineage_neither_takes_another_requests_job_nor_spends_its_retries(app, svc, batch_emulator):
    from shared.flows.submit import Resend, Submitted, on_message
    from shared.pure.request import derive_job_id

    victim, forger = uuid.uuid4().hex, uuid.uuid4().hex
    body = request("ignored", pool="pool-empty", tasks=1)
    del body["jobId"]  # the job id is derived from the message's lineage
    raw = json.dumps(body).encode()
    batch_emulator.set_faults(rate=1.0, statuses=[503], retryAfter=0)
    try:  # "the last attempt of the victim's re-sends": trusted, it would dead-letter now, under the victim's id
        result = on_message(raw, forger, {ORIGINAL_ID: victim, ATTEMPTS: 100, REASON: "transient"},
                            datetime.now(UTC), svc)
    finally:
        batch_emulator.set_faults(rate=0.0)
    assert isinstance(result, Resend) and (result.attempt, result.properties[ORIGINAL_ID]) == (1, forger)
    result = on_message(raw, forger, {ORIGINAL_ID: victim}, datetime.now(UTC), svc)
    assert isinstance(result, Submitted) and result.job_id == derive_job_id(forger) != derive_job_id(victim)


def test_messages_without_a_message_id_each_get_a_key_of_their_own(app, svc):
    from shared.pure.request import derive_job_id

    sequence = 10_000_000 + uuid.uuid4().int % 1_000_000
    for offset in (0, 1):  # two bad requests in the same instant: two records
        app["submit"](sb_message(b"{bad", "", sequence_number=sequence + offset))
    keys = {f"seq-{sequence}", f"seq-{sequence + 1}"}
    assert {r["messageId"] for r in svc.store.rejected() if r.get("messageId") in keys} == keys
    body = request("ignored", pool="pool-empty", tasks=1)
    del body["jobId"]
    for _delivery in range(2):  # a delivery and its redelivery: one job, derived from the sequence number
        app["submit"](sb_message(body, "", sequence_number=sequence + 2))
    job = svc.batch.get_job(derive_job_id(f"seq-{sequence + 2}"))
    assert job is not None and svc.batch.task_counts(job.id).active == 1, "pool-empty: the task waits"
    assert [r for r in svc.store.rejected() if r.get("messageId") == f"seq-{sequence + 2}"] == []


def test_a_delivery_that_meets_its_job_ended_meanwhile_is_already_submitted(own_batch):
    """Terminated between two chunks, or between the last chunk and the arming PATCH: not a rejection."""
    from shared.flows.submit import AlreadySubmitted, submit

    svc = own_batch
    for when in ("after the first chunk", "before the patch"):
        job_id, message_id = f"ended-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
        raw = json.dumps(request(job_id, pool="pool-empty", tasks=250)).encode()

        def end_it(added, expected, job_id=job_id, when=when):
            if (added == 100 and when == "after the first chunk") or (added == expected and when == "before the patch"):
                svc.batch.terminate(job_id, "UserTerminate")

        result = submit(raw, message_id, svc.batch, svc.store, datetime.now(UTC), concurrency=1, progress=end_it)
        assert result == AlreadySubmitted(job_id), when
        assert svc.store.rejected(layout.rejection_prefix(message_id)) == [], when
