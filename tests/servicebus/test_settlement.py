"""Peek-lock settlement with the real sync SDK: complete, abandon, defer, dead-letter, locks."""

from __future__ import annotations

import uuid

import pytest
from azure.servicebus import ServiceBusClient, ServiceBusMessage, ServiceBusReceiveMode, ServiceBusSubQueue
from azure.servicebus.exceptions import MessageLockLostError

from tests.fixtures.servicebus import receive_count

WAIT = 5  # seconds a receive call may block waiting for a message


@pytest.fixture
def client(servicebus):
    with ServiceBusClient.from_connection_string(servicebus.connection_string) as sb:
        yield sb


def send(client, queue: str, *bodies: str, **kwargs) -> None:
    with client.get_queue_sender(queue) as sender:
        sender.send_messages([ServiceBusMessage(b, **kwargs) for b in bodies])


def receive_one(receiver):
    messages = receiver.receive_messages(max_message_count=1, max_wait_time=WAIT)
    assert messages, "expected a message"
    return messages[0]


def test_send_receive_complete(client):
    body = f"hello-{uuid.uuid4()}"
    send(client, "basic", body, application_properties={"kind": "job"}, subject="s1")
    with client.get_queue_receiver("basic") as receiver:
        message = receive_one(receiver)
        assert str(message) == body
        assert message.application_properties == {b"kind": b"job"}
        assert message.subject == "s1"
        assert message.sequence_number > 0
        assert message.delivery_count == 0
        assert message.lock_token is not None
        assert message.locked_until_utc > message.enqueued_time_utc
        receiver.complete_message(message)
        assert receiver.receive_messages(max_message_count=1, max_wait_time=1) == []


def test_abandon_redelivers_with_higher_delivery_count(client):
    send(client, "abandon", "again")
    with client.get_queue_receiver("abandon") as receiver:
        first = receive_one(receiver)
        receiver.abandon_message(first)
        second = receive_one(receiver)
        assert str(second) == "again"
        assert second.sequence_number == first.sequence_number
        assert second.delivery_count == first.delivery_count + 1
        receiver.complete_message(second)


def test_defer_then_receive_deferred_by_sequence_number(client):
    send(client, "defer", "later")
    with client.get_queue_receiver("defer") as receiver:
        message = receive_one(receiver)
        seq = message.sequence_number
        receiver.defer_message(message)
        assert receiver.receive_messages(max_message_count=1, max_wait_time=1) == []
        deferred = receiver.receive_deferred_messages([seq])
        assert [str(m) for m in deferred] == ["later"]
        assert deferred[0].delivery_count == message.delivery_count
        receiver.complete_message(deferred[0])
        assert receiver.peek_messages(max_message_count=5, sequence_number=seq) == []


def test_dead_letter_with_reason_and_description(client):
    send(client, "deadletter", "poison")
    with client.get_queue_receiver("deadletter") as receiver:
        receiver.dead_letter_message(receive_one(receiver), reason="BadInput", error_description="no poolId")
    with client.get_queue_receiver("deadletter", sub_queue=ServiceBusSubQueue.DEAD_LETTER) as dlq:
        dead = receive_one(dlq)
        assert str(dead) == "poison"
        assert dead.dead_letter_reason == "BadInput"
        assert dead.dead_letter_error_description == "no poolId"
        assert dead.dead_letter_source == "deadletter"
        dlq.complete_message(dead)


def test_past_max_delivery_count_goes_to_dead_letter(client):
    send(client, "maxdelivery", "flaky")
    with client.get_queue_receiver("maxdelivery") as receiver:
        for _ in range(2):  # maxDeliveryCount is 2 for this queue
            receiver.abandon_message(receive_one(receiver))
        assert receiver.receive_messages(max_message_count=1, max_wait_time=1) == []
    with client.get_queue_receiver("maxdelivery", sub_queue=ServiceBusSubQueue.DEAD_LETTER) as dlq:
        dead = receive_one(dlq)
        assert str(dead) == "flaky"
        assert dead.dead_letter_reason == "MaxDeliveryCountExceeded"
        dlq.complete_message(dead)


def test_lock_expiry_redelivers_and_old_lock_is_lost(client):
    send(client, "lockexpiry", "slow")
    with client.get_queue_receiver("lockexpiry") as first, client.get_queue_receiver("lockexpiry") as second:
        held = receive_one(first)
        # lockDuration is 1 s: the message comes back to another receiver once the lock lapses.
        again = receive_one(second)
        assert again.sequence_number == held.sequence_number
        assert again.delivery_count == held.delivery_count + 1
        with pytest.raises(MessageLockLostError):
            first.complete_message(held)
        second.complete_message(again)


def test_renew_lock_keeps_message_locked(client):
    send(client, "renew", "long job")
    with client.get_queue_receiver("renew") as receiver, client.get_queue_receiver("renew") as other:
        message = receive_one(receiver)
        original = message.locked_until_utc
        renewed = receiver.renew_message_lock(message)
        assert renewed >= original
        # Waiting past the first lock's end: renewed, so nobody else gets the message.
        assert other.receive_messages(max_message_count=1, max_wait_time=1.5) == []
        receiver.renew_message_lock(message)
        assert other.receive_messages(max_message_count=1, max_wait_time=1.0) == []
        receiver.complete_message(message)


def test_receive_and_delete(client):
    send(client, "receivedelete", "once", "twice")
    with client.get_queue_receiver("receivedelete", receive_mode=ServiceBusReceiveMode.RECEIVE_AND_DELETE) as rd:
        got = [str(m) for m in receive_count(rd, 2, WAIT)]
        assert sorted(got) == ["once", "twice"]
    with client.get_queue_receiver("receivedelete") as receiver:
        assert receiver.receive_messages(max_message_count=1, max_wait_time=1) == []
