"""The blob events proxy: BlobCreated in the Event Grid schema for each blob creation, none for anything else;
subject filters; at-least-once delivery with retries; the validation handshake; the control API."""

from __future__ import annotations

import re
import uuid

import pytest
from azure.core.exceptions import ResourceExistsError
from azure.storage.blob import ContentSettings

from local.azurite import Azurite
from local.blobevents import BlobEventsError, BlobEventsProxy
from tests.fixtures.azurite import settled
from tests.waiting import wait_until

EVENT_KEYS = {"id", "topic", "subject", "eventType", "eventTime", "data", "dataVersion", "metadataVersion"}
DATA_KEYS = {"api", "clientRequestId", "requestId", "eTag", "contentType", "contentLength", "blobType", "url",
             "sequencer", "storageDiagnostics"}


def test_put_blob_raises_one_blob_created_in_the_event_grid_schema(container, subject_prefix, subscribe,
                                                                    webhook_recorder, events_azurite, blob_events):
    name = subscribe(webhook_recorder.url, subject_begins_with=subject_prefix)
    assert webhook_recorder.validations == 1  # the handshake ran when the subscription was created
    client = container.upload_blob("dir/a b.txt", b"hello", content_settings=ContentSettings(content_type="text/plain"))

    [event] = wait_until(lambda: webhook_recorder.accepted, timeout=10, what="the BlobCreated event")
    props = container.get_blob_client("dir/a b.txt").get_blob_properties()
    assert set(event) == EVENT_KEYS and set(event["data"]) == DATA_KEYS
    assert event["eventType"] == "Microsoft.Storage.BlobCreated"
    assert event["subject"] == f"{subject_prefix}dir/a b.txt"
    assert event["topic"].endswith("/providers/Microsoft.Storage/storageAccounts/devstoreaccount1")
    assert event["dataVersion"] == "" and event["metadataVersion"] == "1"
    assert uuid.UUID(event["id"]) and re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7}Z", event["eventTime"])
    data = event["data"]
    assert data["api"] == "PutBlob" and data["blobType"] == "BlockBlob"
    assert data["eTag"] == props.etag and data["contentLength"] == 5 and data["contentType"] == "text/plain"
    assert data["url"] == f"{events_azurite.blob_endpoint}/{container.container_name}/dir/a%20b.txt" == client.url
    assert data["requestId"] and data["clientRequestId"] and re.fullmatch(r"[0-9A-F]{32}", data["sequencer"])
    [attempt] = webhook_recorder.attempts
    assert (attempt.delivery_count, attempt.subscription) == ("0", name.upper())
    assert settled(blob_events, name, 1)["delivered"] == 1


def test_block_upload_and_copy_raise_one_event_each(container, subject_prefix, subscribe, webhook_recorder,
                                                     blob_events):
    name = subscribe(webhook_recorder.url, subject_begins_with=subject_prefix)
    blocks = container.get_blob_client("big.bin")
    blocks.stage_block("YQ==", b"abc")
    blocks.stage_block("Yg==", b"defg")
    blocks.commit_block_list(["YQ==", "Yg=="])
    copy = container.get_blob_client("copy.bin")
    copy.start_copy_from_url(blocks.url)

    events = wait_until(lambda: len(webhook_recorder.accepted) >= 2 and webhook_recorder.accepted, timeout=10,
                        what="two events")
    by_blob = {e["subject"].removeprefix(subject_prefix): e["data"] for e in events}
    assert set(by_blob) == {"big.bin", "copy.bin"}
    assert (by_blob["big.bin"]["api"], by_blob["big.bin"]["contentLength"]) == ("PutBlockList", 7)
    assert (by_blob["copy.bin"]["api"], by_blob["copy.bin"]["contentLength"]) == ("CopyBlob", 7)
    assert by_blob["copy.bin"]["eTag"] == copy.get_blob_properties().etag
    assert settled(blob_events, name, 2)  # staging the blocks raised nothing


def test_failed_writes_and_reads_raise_nothing(container, subject_prefix, subscribe, webhook_recorder, blob_events):
    container.upload_blob("exists.txt", b"before the subscription")
    name = subscribe(webhook_recorder.url, subject_begins_with=subject_prefix)
    with pytest.raises(ResourceExistsError):
        container.upload_blob("exists.txt", b"refused: no overwrite")
    assert container.download_blob("exists.txt").readall() == b"before the subscription"
    container.get_blob_client("exists.txt").get_blob_properties()
    assert [b.name for b in container.list_blobs()] == ["exists.txt"]
    container.upload_blob("sentinel.txt", b"written last")

    wait_until(lambda: webhook_recorder.accepted, timeout=10, what="the sentinel's event")
    assert webhook_recorder.subjects() == [f"{subject_prefix}sentinel.txt"]
    assert settled(blob_events, name, 1)


def test_subject_filters_like_event_grid(container, subject_prefix, subscribe, webhook_recorder, blob_events):
    every = subscribe(webhook_recorder.url, subject_begins_with=subject_prefix)
    logs = subscribe(webhook_recorder.url, subject_begins_with=f"{subject_prefix}logs/", subject_ends_with=".txt")
    exact = subscribe(webhook_recorder.url, subject_begins_with=f"{subject_prefix}logs/", subject_ends_with=".txt",
                      case_sensitive=True)
    for blob in ("logs/a.txt", "logs/b.bin", "other/c.txt", "LOGS/D.TXT"):
        container.upload_blob(blob, b"x")

    wait_until(lambda: settled(blob_events, every, 4) and settled(blob_events, logs, 2)
               and settled(blob_events, exact, 1), timeout=10, what="every subscription's events")
    received: dict[str, list[str]] = {}
    for attempt in webhook_recorder.attempts:
        received.setdefault(attempt.subscription, []).extend(e["subject"].removeprefix(subject_prefix)
                                                             for e in attempt.events)
    assert sorted(received[every.upper()]) == ["LOGS/D.TXT", "logs/a.txt", "logs/b.bin", "other/c.txt"]
    assert sorted(received[logs.upper()]) == ["LOGS/D.TXT", "logs/a.txt"]  # case-insensitive by default
    assert received[exact.upper()] == ["logs/a.txt"]


def test_refused_delivery_is_retried_until_accepted_then_not_again(container, subject_prefix, subscribe,
                                                                    webhook_recorder, blob_events):
    name = subscribe(webhook_recorder.url, subject_begins_with=subject_prefix)
    webhook_recorder.respond_with(500, 503)
    container.upload_blob("retried.txt", b"x")

    stats = wait_until(lambda: settled(blob_events, name, 1), timeout=10, what="the event to be delivered")
    assert (stats["delivered"], stats["failedAttempts"], stats["dropped"]) == (1, 2, 0)
    assert [(a.status, a.delivery_count) for a in webhook_recorder.attempts] == [(500, "0"), (503, "1"), (200, "2")]
    assert len({a.events[0]["id"] for a in webhook_recorder.attempts}) == 1  # the same event each time
    assert webhook_recorder.subjects() == [f"{subject_prefix}retried.txt"]


def test_a_code_event_grid_does_not_retry_drops_the_event(container, subject_prefix, subscribe, webhook_recorder,
                                                           blob_events):
    name = subscribe(webhook_recorder.url, subject_begins_with=subject_prefix)
    webhook_recorder.respond_with(400)
    container.upload_blob("bad-request.txt", b"x")
    stats = wait_until(lambda: settled(blob_events, name, 1), timeout=10, what="the event to be given up")
    assert (stats["delivered"], stats["failedAttempts"], stats["dropped"]) == (0, 1, 1)
    assert [a.status for a in webhook_recorder.attempts] == [400]


def test_a_slow_event_does_not_hold_back_the_next(container, subject_prefix, subscribe, webhook_recorder,
                                                  blob_events):
    name = subscribe(webhook_recorder.url, subject_begins_with=subject_prefix)
    gate = webhook_recorder.hold("/slow.txt")
    container.upload_blob("slow.txt", b"x")
    container.upload_blob("fast.txt", b"x")

    wait_until(lambda: webhook_recorder.accepted, timeout=10, what="the second event")
    assert webhook_recorder.subjects() == [f"{subject_prefix}fast.txt"]
    gate.set()
    wait_until(lambda: settled(blob_events, name, 2), timeout=10, what="the held event")
    assert webhook_recorder.subjects() == [f"{subject_prefix}fast.txt", f"{subject_prefix}slow.txt"]


def test_subscription_needs_the_validation_handshake_and_a_valid_body(blob_events, events_azurite):
    from tests.fixtures.webhook import WebhookRecorder

    silent = WebhookRecorder(validate=False)
    try:
        with pytest.raises(BlobEventsError, match="validation handshake failed"):
            blob_events.subscribe("no-handshake", silent.url)
        assert "no-handshake" not in [s["name"] for s in blob_events.subscriptions()]
        with pytest.raises(BlobEventsError, match="3-64 characters"):
            blob_events.subscribe("a_b", silent.url)
        with pytest.raises(BlobEventsError, match=r"filter keys \['advancedFilters'\] are not supported"):
            blob_events._call("PUT", "subscriptions/advanced", {"properties": {
                "destination": {"endpointType": "WebHook", "properties": {"endpointUrl": silent.url}},
                "filter": {"advancedFilters": [{"operatorType": "StringContains", "key": "subject"}]}}})
    finally:
        silent.close()
    with pytest.raises(BlobEventsError, match="404"):
        blob_events._call("GET", "nothing-here")


def test_control_api_round_trip(blob_events, webhook_recorder):
    created = blob_events.subscribe("round-trip", webhook_recorder.url, subject_begins_with="/blobServices/x/",
                                    max_delivery_attempts=3)
    try:
        assert created["properties"]["filter"] == {"subjectBeginsWith": "/blobServices/x/", "subjectEndsWith": "",
                                                   "isSubjectCaseSensitive": False}
        assert created["properties"]["retryPolicy"] == {"maxDeliveryAttempts": 3, "eventTimeToLiveInMinutes": 1440}
        listed = {s["name"]: s for s in blob_events.subscriptions()}
        assert listed["round-trip"]["properties"]["destination"]["properties"]["endpointUrl"] == webhook_recorder.url
    finally:
        assert blob_events.unsubscribe("round-trip") is True
    assert blob_events.unsubscribe("round-trip") is False


def test_in_process_proxy_in_front_of_azurite(azurite, webhook_recorder):
    from azure.storage.blob import BlobServiceClient

    with BlobEventsProxy(f"http://127.0.0.1:{azurite.blob_port}") as proxy:
        proxy.subscribe("in-process", webhook_recorder.url)
        service = BlobServiceClient.from_connection_string(
            azurite.connection_string.replace(azurite.blob_endpoint, proxy.blob_endpoint))
        container = service.create_container(f"inproc-{uuid.uuid4().hex[:8]}")
        container.upload_blob("one.txt", b"1")
        [event] = wait_until(lambda: webhook_recorder.accepted, timeout=10, what="the event")
        assert event["data"]["url"] == f"{proxy.blob_endpoint}/{container.container_name}/one.txt"
        stats = proxy.stats()
        assert stats["requests"]["PutBlob"] == 1 and stats["published"] == 1
        assert proxy.unsubscribe("in-process") is True


def test_events_mode_refuses_https():
    with pytest.raises(ValueError, match="HTTP only"):
        Azurite(events=True, cert="cert.pem", key="key.pem")
