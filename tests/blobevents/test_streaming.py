"""The proxy streams: a 1 GiB upload and download go through it in one request each while its peak memory
(the child process's high-water RSS) barely moves."""

from __future__ import annotations

import hashlib
import http.client
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

from azure.storage.blob import ContainerSasPermissions, generate_container_sas

from local.azurite import ACCOUNT_KEY, ACCOUNT_NAME
from tests.waiting import wait_until

GIB = 1 << 30
CHUNK = 1 << 20
PEAK_GROWTH_LIMIT = 32 << 20  # far below the body; a proxy that buffered would grow by a GiB


def memory(pid: int) -> dict[str, int]:
    with open(f"/proc/{pid}/status") as status:
        fields = dict(line.split(":", 1) for line in status)
    return {k: int(fields[k].split()[0]) * 1024 for k in ("VmRSS", "VmHWM")}


def test_one_gib_up_and_down_in_bounded_memory(container, subject_prefix, subscribe, webhook_recorder,
                                              events_azurite):
    subscribe(webhook_recorder.url, subject_begins_with=subject_prefix)
    sas = generate_container_sas(ACCOUNT_NAME, container.container_name, account_key=ACCOUNT_KEY,
                                 permission=ContainerSasPermissions(read=True, write=True, create=True),
                                 expiry=datetime.now(UTC) + timedelta(hours=1))
    url = urlsplit(f"{events_azurite.blob_endpoint}/{container.container_name}/big.bin?{sas}")
    target = f"{url.path}?{url.query}"
    pid = events_azurite.events_pid
    before = memory(pid)
    pattern = bytes(range(256)) * (CHUNK // 256)
    sent = hashlib.sha1()

    def body():
        for i in range(GIB // CHUNK):
            chunk = pattern[i % 256:] + pattern[:i % 256]
            sent.update(chunk)
            yield chunk

    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=300)
    try:
        # One Put Blob of 1 GiB: the whole body in one request, as a proxy that buffered could not hide.
        connection.request("PUT", target, body=body(), headers={
            "Content-Length": str(GIB), "x-ms-blob-type": "BlockBlob", "x-ms-version": "2021-12-02"})
        response = connection.getresponse()
        assert (response.status, response.read()) == (201, b"")
        connection.request("GET", target, headers={"x-ms-version": "2021-12-02"})
        response = connection.getresponse()
        assert response.status == 200 and int(response.headers["Content-Length"]) == GIB
        received = hashlib.sha1()
        while block := response.read(CHUNK):
            received.update(block)
    finally:
        connection.close()
    after = memory(pid)
    container.delete_blob("big.bin")  # Azurite keeps it in memory otherwise

    assert received.hexdigest() == sent.hexdigest()
    assert after["VmHWM"] - before["VmRSS"] < PEAK_GROWTH_LIMIT, (before, after)
    [event] = wait_until(lambda: webhook_recorder.accepted, timeout=10, what="the 1 GiB blob's event")
    assert (event["data"]["api"], event["data"]["contentLength"]) == ("PutBlob", GIB)
