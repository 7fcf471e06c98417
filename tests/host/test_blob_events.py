"""Blob triggers with source EventGrid: invoked from BlobCreated events POSTed to the blob extension webhook
(by the blob events proxy standing in for Event Grid), never by polling; one catch-up scan at start-up;
receipts keep each blob version to one run across redelivered events and restarts."""

from __future__ import annotations

import asyncio
import base64
import json
import urllib.error
import urllib.request

from azure.storage.queue import QueueClient

from local.child import free_port
from tests.fixtures.azurite import settled
from tests.host.conftest import call, read_records
from tests.waiting import wait_until

FUNCTION = "blob_event_seen"


def post(url: str, body, kind: str | None = "Notification") -> tuple[int, bytes]:
    headers = {"Content-Type": "application/json"} | ({"aeg-event-type": kind} if kind else {})
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    status, _, raw = call(url, "POST", data, headers)
    return status, raw


def subscribe_host(host, subscribe, function: str = FUNCTION) -> str:
    """What the local stack (and infra, in Azure) does per function: one subscription with its filters."""
    [hook] = [h for h in host.blob_webhooks() if h["function"] == function]
    return subscribe(hook["webhook"], subject_begins_with=hook["subjectBeginsWith"],
                     subject_ends_with=hook["subjectEndsWith"], case_sensitive=True)


def on_host_loop(host, fn):
    async def run():
        return fn()
    return asyncio.run_coroutine_threadsafe(run(), host._loop).result(10)


def test_runs_from_events_and_lists_the_container_only_once_at_start_up(
        events_app_dir, start_host, records, events_blob_service, event_container, blob_events, subscribe):
    container = events_blob_service.create_container(event_container)
    for i in range(100):  # blobs the function does not care about: a poller would list them every time
        container.upload_blob(f"job-old/log-{i}.txt", b"x")
    lists_before = blob_events.stats()["requests"].get("ListBlobs", 0)

    host = start_host(events_app_dir, FUNCTION)
    listener = host._listeners[0]
    wait_until(listener.caught_up.is_set, timeout=10, what="the catch-up scan")
    assert blob_events.stats()["requests"]["ListBlobs"] == lists_before + 1
    assert host.blob_webhooks() == [{
        "function": FUNCTION,
        "webhook": f"{host.url}/runtime/webhooks/blobs?functionName=Host.Functions.{FUNCTION}",
        "subjectBeginsWith": f"/blobServices/default/containers/{event_container}/blobs/",
        "subjectEndsWith": "/manifest.json"}]
    subscribe_host(host, subscribe)
    container.upload_blob("job-a/manifest.json", b'{"a": 1}')
    container.upload_blob("job-b/manifest.json", b'{"b": 2}')

    seen = wait_until(lambda: len(read_records(records, FUNCTION)) == 2 and read_records(records, FUNCTION),
                      timeout=15, what="both manifests invoked")
    assert sorted(r["name"] for r in seen) == [f"{event_container}/job-a/manifest.json",
                                               f"{event_container}/job-b/manifest.json"]
    etags = {r["name"].split("/")[1]: r["etag"] for r in seen}
    assert etags["job-a"] == container.get_blob_client("job-a/manifest.json").get_blob_properties().etag
    assert blob_events.stats()["requests"]["ListBlobs"] == lists_before + 1  # no listing after start-up


def test_a_blob_written_while_the_host_was_down_runs_once_after_restart(
        events_app_dir, start_host, records, events_blob_service, event_container, blob_events, subscribe):
    container = events_blob_service.create_container(event_container)
    port = free_port()  # the restarted host listens where the subscription points, as an app's URL stays put
    host = start_host(events_app_dir, FUNCTION, port=port)
    name = subscribe_host(host, subscribe)
    host.stop()

    container.upload_blob("job-down/manifest.json", b"{}")
    wait_until(lambda: blob_events.stats()["subscriptions"][name]["failedAttempts"] >= 1, timeout=10,
               what="a delivery attempt to the stopped host")
    start_host(events_app_dir, FUNCTION, port=port)
    [record] = wait_until(lambda: read_records(records, FUNCTION), timeout=15, what="the invocation after restart")
    assert record["name"] == f"{event_container}/job-down/manifest.json"
    # Both the catch-up scan and the redelivered event reached the host; the blob still ran once.
    stats = wait_until(lambda: settled(blob_events, name, 1), timeout=15, what="the redelivery to be accepted")
    assert stats["delivered"] == 1
    assert len(read_records(records, FUNCTION)) == 1


def test_a_redelivered_event_runs_the_blob_version_once(
        events_app_dir, start_host, records, events_blob_service, event_container, blob_events, subscribe,
        webhook_recorder, host_id):
    container = events_blob_service.create_container(event_container)
    host = start_host(events_app_dir, FUNCTION)
    name = subscribe_host(host, subscribe)
    subscribe(webhook_recorder.url, subject_begins_with=f"/blobServices/default/containers/{event_container}/")
    etag = container.upload_blob("job-r/manifest.json", b"{}").get_blob_properties().etag
    key = ("job-r/manifest.json", etag)
    wait_until(lambda: read_records(records, FUNCTION), timeout=15, what="the first invocation")
    [event] = wait_until(lambda: webhook_recorder.accepted, timeout=10, what="a copy of the event")
    wait_until(lambda: settled(blob_events, name, 1), timeout=10, what="the host to acknowledge the event")

    def redelivered_and_settled(current):
        listener = current._listeners[0]
        assert post(current.blob_webhooks()[0]["webhook"], [event])[0] == 202
        wait_until(lambda: key in listener.done and key not in listener.pending, timeout=10,
                   what="the redelivered event settled")

    redelivered_and_settled(host)  # the same host: it remembers the version
    host.stop()
    host = start_host(events_app_dir, FUNCTION)
    listener = host._listeners[0]
    wait_until(listener.caught_up.is_set, timeout=10, what="the catch-up scan")
    wait_until(lambda: key in listener.done, timeout=10, what="the catch-up scan to read the receipt")
    on_host_loop(host, listener.done.clear)  # as a host that has not seen the blob: only the receipt is left
    redelivered_and_settled(host)

    assert len(read_records(records, FUNCTION)) == 1
    receipt = events_blob_service.get_blob_client(
        "azure-webjobs-hosts",
        f"blobreceipts/{host_id}/Host.Functions.{FUNCTION}/{etag}/{event_container}/job-r/manifest.json")
    assert receipt.get_blob_properties().metadata == {"status": "complete", "attempts": "1"}


def test_a_failing_blob_is_retried_then_poisoned(events_app_dir, start_host, records, events_blob_service,
                                                event_container, subscribe, events_azurite):
    container = events_blob_service.create_container(event_container)
    host = start_host(events_app_dir, FUNCTION)
    subscribe_host(host, subscribe)
    etag = container.upload_blob("job-fail/manifest.json", b"{}").get_blob_properties().etag
    poison = QueueClient.from_connection_string(events_azurite.connection_string, "webjobs-blobtrigger-poison")

    def poison_message():
        try:
            messages = poison.peek_messages(max_messages=32)
        except Exception:  # the queue does not exist until the first poison message
            return None
        return next((body for m in messages if (body := json.loads(base64.b64decode(m.content)))["ContainerName"]
                     == event_container), None)

    body = wait_until(poison_message, timeout=20, what="the poison message")
    assert body == {"Type": "BlobTrigger", "FunctionId": f"Host.Functions.{FUNCTION}", "BlobType": "BlockBlob",
                    "ContainerName": event_container, "BlobName": "job-fail/manifest.json", "ETag": etag}
    assert len(read_records(records, FUNCTION)) == 5  # poisonBlobThreshold


def test_webhook_speaks_the_blob_extension_protocol(events_app_dir, start_host, event_container, container_name):
    host = start_host(events_app_dir, FUNCTION, "blob_seen")
    url = f"{host.url}/runtime/webhooks/blobs?functionName=Host.Functions.{FUNCTION}&code=ignored-locally"
    validation = [{"id": "1", "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent", "subject": "",
                   "data": {"validationCode": "abc-123"}, "dataVersion": "2", "metadataVersion": "1"}]
    status, body = post(url, validation, kind="SubscriptionValidation")
    assert (status, json.loads(body)) == (200, {"validationResponse": "abc-123"})
    other = {"eventType": "Microsoft.Storage.BlobDeleted", "subject": f"/blobServices/default/containers/"
                                                                      f"{event_container}/blobs/x/manifest.json"}
    assert post(url, [other])[0] == 202  # accepted, and nothing to run
    assert post(url, b"not json")[0] == 400
    assert post(url, [other], kind=None)[0] == 400  # no aeg-event-type
    polling = f"{host.url}/runtime/webhooks/blobs?functionName=Host.Functions.blob_seen"
    assert post(polling, [other])[0] == 404  # a polling trigger has no webhook
    assert post(f"{host.url}/runtime/webhooks/blobs?functionName=Host.Functions.nope", [other])[0] == 404
    with urllib.request.urlopen(f"{host.url}/admin/functions", timeout=10) as response:
        listed = {f["name"]: f for f in json.loads(response.read())}
    assert listed["blob_seen"] == {"name": "blob_seen", "trigger": "blobTrigger", "path": f"{container_name}/{{name}}",
                                   "source": "LogsAndContainerScan"}
    assert listed[FUNCTION]["source"] == "EventGrid" and listed[FUNCTION]["webhook"] == host.blob_webhooks()[0]["webhook"]
