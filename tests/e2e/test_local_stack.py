"""End to end through the dev host: Service Bus -> submit -> Batch -> release uploads -> collect -> report."""

from __future__ import annotations

import hashlib
import json
import subprocess
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
from azure.servicebus import ServiceBusClient, ServiceBusMessage, ServiceBusSubQueue

from shared.adapters.queue import text_properties
from shared.pure.report import is_final
from shared.pure.report_page import CONTENT_SECURITY_POLICY
from tests.waiting import wait_until

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "job-request.json"


def send(stack, body: bytes, message_id: str | None = None) -> str:
    message_id = message_id or uuid.uuid4().hex
    with ServiceBusClient.from_connection_string(stack.servicebus_connection) as client, \
            client.get_queue_sender("job-requests") as sender:
        sender.send_messages(ServiceBusMessage(body, message_id=message_id, content_type="application/json"))
    return message_id


def request(job_id: str) -> bytes:
    body = json.loads(EXAMPLE.read_text())
    body["jobId"] = job_id
    return json.dumps(body).encode()


def report_done(services, job_id: str):
    report = services.store.report(job_id)
    return report if is_final(report) else None


def test_request_on_the_queue_becomes_job_logs_and_report(stack, services):
    job_id = f"e2e-{uuid.uuid4().hex[:8]}"
    send(stack, request(job_id))
    report = wait_until(lambda: report_done(services, job_id), 90, 0.3, what="the job's report")
    assert report["outcome"]["terminateReason"] == "AllTasksComplete"
    assert report["outcome"]["taskCounts"]["succeeded"] == 8
    assert len(report["nodes"]) == 2
    assert all(n["prepExitCode"] == 0 and n["releaseExitCode"] == 0 and n["status"] == "collected"
               for n in report["nodes"])
    assert sum(n["tasksRun"] for n in report["nodes"]) == 8 and report["tasks"]["states"] == {"completed": 8}
    # Each task's stdout and stderr, and the prep and release task's own on both nodes.
    assert report["totals"]["files"] == 8 * 2 + 2 * 2 * 2
    with urllib.request.urlopen(f"{stack.host_url}/api/jobs/{job_id}", timeout=10) as resp:
        assert json.loads(resp.read())["jobId"] == job_id
    browser = urllib.request.Request(f"{stack.host_url}/api/jobs/{job_id}", headers={"Accept": "text/html"})
    with urllib.request.urlopen(browser, timeout=10) as resp:
        assert resp.headers["Content-Type"].startswith("text/html")
        assert resp.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
        page = resp.read().decode()
    assert f"<title>Job {job_id}: report</title>" in page and "AllTasksComplete" in page
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{stack.host_url}/api/jobs/{job_id}?format=xml", timeout=10)
    assert refused.value.code == 400 and b"format: must be json or html" in refused.value.read()


BIG_LINES = 5_500_000  # `seq`: 43 MB, over the 32 MiB one buffered response was held to


def test_a_big_log_downloads_through_the_dev_host_as_a_stream(stack, services):
    """The whole chain: a task's 43 MB stdout, zipped by the release task, read back out of the node's
    bundle by the function and sent by the dev host while it is read, in full, with its length."""
    job_id = f"e2e-big-{uuid.uuid4().hex[:8]}"
    body = json.loads(request(job_id))
    body["taskFactory"].update(end=1, commandLine=f"/bin/bash -c 'seq 1 {BIG_LINES}'")
    send(stack, json.dumps(body).encode())
    report = wait_until(lambda: report_done(services, job_id), 90, 0.3, what="the job's report")
    node = next(n["nodeId"] for n in report["nodes"] if n["tasksRun"] == 1)
    expected = subprocess.run(["seq", "1", str(BIG_LINES)], capture_output=True, check=True).stdout
    url = f"{stack.host_url}/api/jobs/{job_id}/files/{node}/job-1/task-1/stdout.txt"
    digest, reads = hashlib.sha256(), 0
    with urllib.request.urlopen(url, timeout=30) as resp:
        assert resp.status == 200 and resp.headers["Content-Length"] == str(len(expected))
        while chunk := resp.read(1024 * 1024):
            digest.update(chunk)
            reads += 1
    assert digest.hexdigest() == hashlib.sha256(expected).hexdigest() and reads == -(-len(expected) // 2**20)
    part = urllib.request.Request(url, headers={"Range": "bytes=-12"})
    with urllib.request.urlopen(part, timeout=30) as resp:
        assert (resp.status, resp.read()) == (206, expected[-12:])


def test_invalid_request_ends_rejected_with_its_reason(stack, services):
    message_id = send(stack, b'{"poolId": "demo-pool", "timeout": "soon"}')
    record = wait_until(lambda: next((r for r in services.store.rejected() if r.get("messageId") == message_id),
                                     None), 30, 0.2, what="the rejection record")
    fields = {e["field"] for e in record["errors"]}
    assert "timeout" in fields


def test_a_batch_outage_schedules_the_request_again_and_dead_letters_nothing(stack, services):
    """Batch answering 503 to everything: the message is settled and sent again later with its lineage,
    where it used to be redelivered at once and dead-lettered within seconds."""
    from shared.pure.retry import ATTEMPTS, ORIGINAL_ID, REASON

    endpoint = stack.batch_endpoint
    job_id = f"outage-{uuid.uuid4().hex[:8]}"
    endpoint.set_faults(rate=1.0, statuses=[503], retryAfter=0)
    try:
        message_id = send(stack, request(job_id))
        with ServiceBusClient.from_connection_string(stack.servicebus_connection) as client, \
                client.get_queue_receiver("job-requests") as queue:
            def scheduled():
                for m in queue.peek_messages(max_message_count=100):
                    props = text_properties(m)
                    if props.get(ORIGINAL_ID) == message_id:
                        return props
                return None

            again = wait_until(scheduled, 60, 0.3, what="the request scheduled again")
        with ServiceBusClient.from_connection_string(stack.servicebus_connection) as client, \
                client.get_queue_receiver("job-requests", sub_queue=ServiceBusSubQueue.DEAD_LETTER) as dlq:
            dead = [m for m in dlq.peek_messages(max_message_count=100) if m.message_id == message_id]
    finally:
        endpoint.set_faults(rate=0.0)
    assert (again[ATTEMPTS], again[REASON]) == (1, "transient")
    assert dead == [] and services.batch.get_job(job_id) is None


def test_host_restart_mid_flow_loses_nothing_and_does_nothing_twice(stack, services):
    job_id = f"restart-{uuid.uuid4().hex[:8]}"
    send(stack, request(job_id))
    wait_until(lambda: services.batch.get_job(job_id), 30, 0.1, what="the job to be created")
    stack.host.stop()
    stack.host.start()
    report = wait_until(lambda: report_done(services, job_id), 90, 0.3, what="the job's report")
    counts = services.batch.task_counts(job_id)
    assert (counts.completed, counts.succeeded) == (8, 8), "each task ran once"
    assert len([j for j in services.batch.list_jobs() if j.id == job_id]) == 1
    assert report["outcome"]["taskCounts"]["succeeded"] == 8


def test_a_five_thousand_task_job_gets_its_complete_report(stack, services):
    """At the size users run: every task's output collected, per node, through the real triggers."""
    job_id = f"big-{uuid.uuid4().hex[:8]}"
    body = {"jobId": job_id, "poolId": "demo-pool", "timeout": "PT30M",
            "taskFactory": {"type": "parametricSweep", "start": 1, "end": 5000, "idFormat": "t{0:04}",
                            "commandLine": "/bin/bash -c 'echo result {0}; echo ERROR in {0} >&2; exit $(({0} % 1000 == 0))'"}}
    send(stack, json.dumps(body).encode())
    report = wait_until(lambda: report_done(services, job_id), 240, 0.5, what="the 5,000-task job's report")
    assert report["tasks"]["states"] == {"completed": 5000}
    assert report["tasks"]["failedTotal"] == 5 and {t["id"] for t in report["tasks"]["failed"]} == {
        "t1000", "t2000", "t3000", "t4000", "t5000"}
    assert all(t["excerpt"] == [f"ERROR in {t['id'][1:].lstrip('0')}"] for t in report["tasks"]["failed"])
    assert report["totals"]["files"] == 5000 * 2 + 2 * 2 * 2 and report["totals"]["errorLines"] == 5000
    assert sum(n["tasksRun"] for n in report["nodes"]) == 5000 and report["totals"]["nodesCollected"] == 2
    blobs = [b.name for b in services.store.logs.list(f"{job_id}/")]
    assert len(blobs) == 2 * 2, "a bundle and a manifest per node, nothing per task"
