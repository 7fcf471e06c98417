"""Scheduling, peek, batches, duplicate detection and TTL with the real sync SDK."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from azure.servicebus import ServiceBusClient, ServiceBusMessage, ServiceBusSubQueue

from tests.waiting import wait_until

WAIT = 5


@pytest.fixture
def client(servicebus):
    with ServiceBusClient.from_connection_string(servicebus.connection_string) as sb:
        yield sb


def drain(receiver, expected: int, wait: float = WAIT) -> list:
    got: list = []
    while len(got) < expected:
        batch = receiver.receive_messages(max_message_count=expected - len(got), max_wait_time=wait)
        if not batch:
            break
        for message in batch:
            receiver.complete_message(message)
        got += batch
    return got


def test_scheduled_message_arrives_later_and_cancel_removes_one(client):
    soon = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)
    with client.get_queue_sender("scheduled") as sender:
        keep, cancel = sender.schedule_messages([ServiceBusMessage("keep"), ServiceBusMessage("cancel")], soon)
        sender.cancel_scheduled_messages(cancel)
    with client.get_queue_receiver("scheduled") as receiver:
        peeked = receiver.peek_messages(max_message_count=10)
        assert [p.sequence_number for p in peeked] == [keep]
        assert peeked[0].scheduled_enqueue_time_utc is not None
        got = drain(receiver, 1)
        assert [str(m) for m in got] == ["keep"]
        assert dt.datetime.now(dt.UTC) >= soon - dt.timedelta(milliseconds=100)
        assert receiver.receive_messages(max_message_count=1, max_wait_time=1.5) == []


def test_scheduled_enqueue_time_on_send(client):
    soon = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)
    with client.get_queue_sender("scheduled") as sender:
        sender.send_messages(ServiceBusMessage("via send", scheduled_enqueue_time_utc=soon))
    with client.get_queue_receiver("scheduled") as receiver:
        got = drain(receiver, 1)
        assert [str(m) for m in got] == ["via send"]
        assert dt.datetime.now(dt.UTC) >= soon - dt.timedelta(milliseconds=100)


def test_peek_does_not_lock_or_consume(client):
    with client.get_queue_sender("peek") as sender:
        sender.send_messages([ServiceBusMessage(f"p{i}") for i in range(5)])
    with client.get_queue_receiver("peek") as receiver:
        first = receiver.peek_messages(max_message_count=3)
        assert [str(m) for m in first] == ["p0", "p1", "p2"]
        rest = receiver.peek_messages(max_message_count=10, sequence_number=first[-1].sequence_number + 1)
        assert [str(m) for m in rest] == ["p3", "p4"]
        assert [str(m) for m in drain(receiver, 5)] == [f"p{i}" for i in range(5)]
        assert receiver.peek_messages(max_message_count=10) == []


def test_batch_send_keeps_each_message(client):
    with client.get_queue_sender("batch") as sender:
        batch = sender.create_message_batch()
        for i in range(50):
            batch.add_message(ServiceBusMessage(f"b{i}", message_id=f"id-{i}", application_properties={"i": i}))
        sender.send_messages(batch)
        sender.send_messages([ServiceBusMessage("list-1"), ServiceBusMessage("list-2")])
    with client.get_queue_receiver("batch") as receiver:
        got = drain(receiver, 52)
    assert [str(m) for m in got] == [f"b{i}" for i in range(50)] + ["list-1", "list-2"]
    assert [m.message_id for m in got[:50]] == [f"id-{i}" for i in range(50)]
    assert [m.application_properties[b"i"] for m in got[:50]] == list(range(50))
    seqs = [m.sequence_number for m in got]
    assert seqs == sorted(seqs) and len(set(seqs)) == 52


def test_duplicate_detection_by_message_id(client):
    mid = str(uuid.uuid4())
    with client.get_queue_sender("dedup") as sender:
        sender.send_messages(ServiceBusMessage("first", message_id=mid))
        sender.send_messages(ServiceBusMessage("second", message_id=mid))
        sender.send_messages(ServiceBusMessage("other", message_id=str(uuid.uuid4())))
    with client.get_queue_receiver("dedup") as receiver:
        got = drain(receiver, 3, wait=2)
    assert sorted(str(m) for m in got) == ["first", "other"]


def test_ttl_expiry_moves_to_dead_letter(client):
    with client.get_queue_sender("ttl") as sender:
        sender.send_messages(ServiceBusMessage("stale"))
        sender.send_messages(ServiceBusMessage("short", time_to_live=dt.timedelta(milliseconds=300)))
    # Nobody receives from the queue: expiry must happen on its own.
    with client.get_queue_receiver("ttl", sub_queue=ServiceBusSubQueue.DEAD_LETTER) as dlq:
        dead = drain(dlq, 2)
    assert sorted(str(m) for m in dead) == ["short", "stale"]
    assert {m.dead_letter_reason for m in dead} == {"TTLExpiredException"}
    with client.get_queue_receiver("ttl") as receiver:
        assert receiver.peek_messages(max_message_count=5) == []


def test_ttl_expiry_without_dead_lettering_drops(client):
    with client.get_queue_sender("ttl-drop") as sender:
        sender.send_messages(ServiceBusMessage("gone"))  # the queue's default TTL is 3 s
    with client.get_queue_receiver("ttl-drop", sub_queue=ServiceBusSubQueue.DEAD_LETTER) as dlq, \
            client.get_queue_receiver("ttl-drop") as receiver:
        first = receiver.peek_messages(max_message_count=5)
        assert [str(m) for m in first] == ["gone"]
        assert first[0].expires_at_utc == first[0].enqueued_time_utc + dt.timedelta(seconds=3)
        wait_until(lambda: receiver.peek_messages(max_message_count=5) == [], 6, what="the message to expire")
        assert dlq.receive_messages(max_message_count=1, max_wait_time=0.5) == []
