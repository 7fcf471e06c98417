"""Blob trigger: once per blob version (receipts survive a restart), lazy content, poison after 5 failures."""

from __future__ import annotations

import base64
import json

from azure.storage.queue import QueueClient

from local.host.blob_trigger import quoted
from tests.host.conftest import read_records
from tests.waiting import wait_until


def all_seen(host, container) -> bool:
    listener = host._listeners[0]
    current = {(b.name, quoted(b.etag)) for b in container.list_blobs()}
    return current <= listener.done


def test_each_blob_version_runs_once_even_across_a_restart(app_dir, start_host, records, blob_service,
                                                           container_name):
    container = blob_service.create_container(container_name)
    container.upload_blob("a.txt", b"first")
    container.upload_blob("read-me.txt", b"content on demand")

    host = start_host(app_dir, "blob_seen")
    wait_until(lambda: all_seen(host, container), timeout=15, what="both blobs processed")
    seen = {r["name"]: r for r in read_records(records, "blob_seen")}
    assert set(seen) == {f"{container_name}/a.txt", f"{container_name}/read-me.txt"}
    assert seen[f"{container_name}/a.txt"]["length"] == 5
    assert seen[f"{container_name}/a.txt"]["loaded"] is False, "content downloaded though never read"
    assert seen[f"{container_name}/a.txt"]["uri"].endswith(f"/{container_name}/a.txt")
    assert seen[f"{container_name}/read-me.txt"]["content"] == "content on demand"
    host.stop()

    container.upload_blob("a.txt", b"second version", overwrite=True)
    container.upload_blob("b.txt", b"new")
    host = start_host(app_dir, "blob_seen")
    wait_until(lambda: all_seen(host, container), timeout=15, what="changed and new blobs processed")
    names = [r["name"].split("/", 1)[1] for r in read_records(records, "blob_seen")]
    assert sorted(names) == ["a.txt", "a.txt", "b.txt", "read-me.txt"]


def test_sdk_type_trigger_gets_a_blob_client_for_the_blob(app_dir, start_host, records, blob_service,
                                                          container_name):
    container = blob_service.create_container(container_name)
    container.upload_blob("dir/big.dmp", b"x" * 4096)
    start_host(app_dir, "blob_client_seen")
    seen = wait_until(lambda: read_records(records, "blob_client_seen"), timeout=15, what="the blob client call")
    assert seen[0] | {"at": None} == {"at": None, "type": "azure.storage.blob._blob_client.BlobClient",
                                      "container": container_name, "name": "dir/big.dmp", "size": 4096}


def test_blob_failing_five_times_goes_to_poison_queue(app_dir, start_host, records, blob_service, container_name,
                                                      azurite_connection_string):
    container = blob_service.create_container(container_name)
    container.upload_blob("fail-me.txt", b"bad")
    start_host(app_dir, "blob_seen")
    poison = QueueClient.from_connection_string(azurite_connection_string, "webjobs-blobtrigger-poison")

    def poison_message():
        try:
            for message in poison.peek_messages(max_messages=32):
                body = json.loads(base64.b64decode(message.content))
                if body["ContainerName"] == container_name:
                    return body
        except Exception:  # queue not created yet
            return None
        return None

    body = wait_until(poison_message, timeout=20, what="poison queue message")
    assert body["FunctionId"] == "Host.Functions.blob_seen"
    assert body["BlobName"] == "fail-me.txt"
    assert body["ETag"] == container.get_blob_client("fail-me.txt").get_blob_properties().etag
    assert len(read_records(records, "blob_seen")) == 5
