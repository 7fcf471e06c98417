"""Service Bus trigger: payload, completion, abandon/redelivery/dead-letter, lock renewal, concurrency."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

from azure.servicebus import ServiceBusClient, ServiceBusMessage, ServiceBusSubQueue

from tests.host.conftest import call, read_records
from tests.waiting import wait_until


def send(connection: str, queue: str, *messages: ServiceBusMessage) -> None:
    with ServiceBusClient.from_connection_string(connection) as client, client.get_queue_sender(queue) as sender:
        sender.send_messages(list(messages))


def queue_is_empty(connection: str, queue: str) -> bool:
    with ServiceBusClient.from_connection_string(connection) as client, client.get_queue_receiver(queue) as receiver:
        return not receiver.peek_messages(max_message_count=10)



def peak_running(records: list[dict]) -> int:
    """The most invocations that ran at once, from their start and end times."""
    events = sorted([(r["start"], 1) for r in records] + [(r["end"], -1) for r in records])
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    return peak

def test_message_reaches_function_as_worker_payload_and_is_completed(app_dir, start_host, records,
                                                                      host_servicebus):
    conn = host_servicebus.connection_string
    start_host(app_dir, "sb_echo")
    message_id = uuid.uuid4().hex
    send(conn, "host-ok", ServiceBusMessage(
        b'{"poolId": "p1"}', message_id=message_id, content_type="application/json", correlation_id="corr-1",
        subject="job-request", application_properties={"source": "test", "attempt": 1}))

    [got] = wait_until(lambda: read_records(records, "sb_echo"), timeout=15, what="sb_echo invocation")
    assert got["is_message"] is True
    assert got["body"] == '{"poolId": "p1"}'
    assert got["message_id"] == message_id
    assert got["delivery_count"] == 1  # first delivery counts 1, as the .NET host reports it
    assert got["content_type"] == "application/json"
    assert got["correlation_id"] == "corr-1"
    assert got["subject"] == "job-request"
    assert got["properties"] == {"source": "test", "attempt": 1}
    assert got["enqueued"].endswith("+00:00")
    assert got["sequence_number"] >= 1
    assert got["function_name"] == "sb_echo" and got["invocation_id"]
    wait_until(lambda: queue_is_empty(conn, "host-ok"), timeout=10, what="message completed")


def test_failing_message_is_abandoned_redelivered_then_dead_lettered(app_dir, start_host, records,
                                                                      host_servicebus):
    conn = host_servicebus.connection_string
    start_host(app_dir, "sb_fail")
    message_id = uuid.uuid4().hex
    send(conn, "host-fail", ServiceBusMessage(b"poison", message_id=message_id))

    with ServiceBusClient.from_connection_string(conn) as client, client.get_queue_receiver(
            "host-fail", sub_queue=ServiceBusSubQueue.DEAD_LETTER) as dlq:
        dead = wait_until(lambda: dlq.receive_messages(max_message_count=1, max_wait_time=1), timeout=20,
                          what="message in the dead-letter queue")
        assert dead[0].message_id == message_id
        assert dead[0].dead_letter_reason == "MaxDeliveryCountExceeded"
        dlq.complete_message(dead[0])
    attempts = [r["delivery_count"] for r in read_records(records, "sb_fail") if r["message_id"] == message_id]
    assert attempts == [1, 2, 3]  # the queue's maxDeliveryCount is 3


def test_lock_is_renewed_and_max_concurrent_calls_is_honoured(app_dir, start_host, records, host_servicebus):
    conn = host_servicebus.connection_string
    start_host(app_dir, "sb_slow", env={"SLOW_SECONDS": "5.5"})  # lock is 5 s; host.json allows 2 at once
    ids = [uuid.uuid4().hex for _ in range(3)]
    send(conn, "host-slow", *(ServiceBusMessage(b"slow", message_id=i) for i in ids))

    done = wait_until(lambda: len(read_records(records, "sb_slow")) >= 3 and read_records(records, "sb_slow"),
                      timeout=30, what="3 slow invocations")
    assert sorted(r["message_id"] for r in done) == sorted(ids)
    assert all(r["delivery_count"] == 1 for r in done), "a lock expired: renewal did not keep it"
    assert peak_running(done) == 2
    wait_until(lambda: queue_is_empty(conn, "host-slow"), timeout=10, what="slow messages completed")


def test_stop_waits_for_the_running_invocation_then_completes_it(app_dir, start_host, records, host_servicebus):
    conn = host_servicebus.connection_string
    host = start_host(app_dir, "sb_slow", env={"SLOW_SECONDS": "1.5"})
    message_id = uuid.uuid4().hex
    send(conn, "host-slow", ServiceBusMessage(b"in flight at shutdown", message_id=message_id))
    listener = host._listeners[0]
    wait_until(lambda: listener.in_flight, timeout=10, what="invocation running")

    host.stop()  # returns only once the running invocation has finished and its message is settled

    assert [r["message_id"] for r in read_records(records, "sb_slow")] == [message_id]
    assert queue_is_empty(conn, "host-slow")


def test_invocations_outliving_the_lock_four_at_a_time_run_once_each(make_app, start_host, records,
                                                                       host_servicebus):
    """maxConcurrentCalls 4 and a 5 s lock, invocations of 7 s: the host renews four locks at once
    (the SDK's AutoLockRenewer, whose concurrent requests reuse delivery-ids), and no message is
    delivered twice."""
    conn = host_servicebus.connection_string
    app = make_app({"ServiceBusConnection": conn, "RENEW_QUEUE": "host-renew", "WORK_SECONDS": "7"},
                   source=Path(__file__).parent / "renew_app")
    start_host(app)
    ids = [uuid.uuid4().hex for _ in range(8)]
    send(conn, "host-renew", *(ServiceBusMessage(b"work", message_id=i) for i in ids))

    done = wait_until(lambda: len(read_records(records, "outlives_lock")) >= 8
                      and read_records(records, "outlives_lock"), timeout=60, what="8 invocations")
    assert sorted(r["message_id"] for r in done) == sorted(ids), "a message was invoked twice"
    assert all(r["delivery_count"] == 1 for r in done), "a lock expired: the message came back"
    assert peak_running(done) == 4
    wait_until(lambda: queue_is_empty(conn, "host-renew"), timeout=10, what="messages completed")
    time.sleep(6)  # past another lock duration: nothing comes back
    assert len(read_records(records, "outlives_lock")) == 8


def test_topic_output_binding_feeds_a_subscription_trigger(app_dir, start_host, records, host_servicebus):
    host = start_host(app_dir, "http_publish", "sb_audit")
    assert call(f"{host.url}/api/publish", method="POST", body=b'{"job": "j-1", "state": "done"}')[0] == 202
    [seen] = wait_until(lambda: read_records(records, "sb_audit"), timeout=15, what="sb_audit invocation")
    assert seen["body"] == '{"job": "j-1", "state": "done"}' and seen["delivery_count"] == 1
    # The other subscription has its own copy, under the same sequence number.
    with ServiceBusClient.from_connection_string(host_servicebus.connection_string) as client, \
            client.get_subscription_receiver("host-events", "other") as receiver:
        [copy] = receiver.receive_messages(max_message_count=1, max_wait_time=10)
        receiver.complete_message(copy)
    assert copy.sequence_number == seen["sequence_number"]
