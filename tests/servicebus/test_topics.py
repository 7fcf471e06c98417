"""Topics and subscriptions with the unmodified SDK: fan-out under one sequence number, SQL and correlation
filters, independent settlement, dead-letter queues, scheduling, duplicate detection, TTL, durability."""

from __future__ import annotations

import datetime as dt
import sqlite3
import uuid

import pytest
from azure.servicebus import ServiceBusClient, ServiceBusMessage, ServiceBusSubQueue
from azure.servicebus.aio import ServiceBusClient as AsyncServiceBusClient
from azure.servicebus.exceptions import MessagingEntityNotFoundError, ServiceBusError

from local.servicebus.config import ConfigError, topic_from_dict
from local.servicebus.store import SqliteStore

WAIT = 5


@pytest.fixture
def client(servicebus):
    with ServiceBusClient.from_connection_string(servicebus.connection_string) as sb:
        yield sb


def drain(receiver, settle: str = "complete", wait: float = 2) -> list:
    got: list = []
    while True:
        batch = receiver.receive_messages(max_message_count=20, max_wait_time=wait)
        if not batch:
            return got
        for message in batch:
            getattr(receiver, f"{settle}_message")(message)
        got += batch


def subscription(client, name: str, topic: str = "job-events", **kwargs):
    return client.get_subscription_receiver(topic, name, **kwargs)


def test_fan_out_with_sql_and_correlation_filters(client):
    tag = uuid.uuid4().hex[:6]
    messages = {
        "failed-twice": {"application_properties": {"status": "failed", "attempt": 2, "tag": tag}},
        "failed-once": {"application_properties": {"status": "failed", "attempt": 1, "tag": tag}},
        "pool-a": {"application_properties": {"pool": "a", "tag": tag}},
        "urgent": {"subject": "urgent", "application_properties": {"tag": tag}},
        "plain": {"application_properties": {"tag": tag}},
    }
    with client.get_topic_sender("job-events") as sender:
        sender.send_messages([ServiceBusMessage(body, **kwargs) for body, kwargs in messages.items()])
    got = {}
    for name in ("everything", "failures", "pool-a", "nothing"):
        with subscription(client, name) as receiver:
            got[name] = drain(receiver)
    assert sorted(str(m) for m in got["everything"]) == sorted(messages)
    assert [str(m) for m in got["failures"]] == ["failed-twice"]  # status = 'failed' AND attempt >= 2
    assert sorted(str(m) for m in got["pool-a"]) == ["pool-a", "urgent"]  # either correlation rule
    assert got["nothing"] == []
    # One sequence number per message, the topic's, in every subscription that has a copy.
    seq = {str(m): m.sequence_number for m in got["everything"]}
    assert got["failures"][0].sequence_number == seq["failed-twice"]
    assert {m.sequence_number for m in got["pool-a"]} == {seq["pool-a"], seq["urgent"]}


def test_each_subscription_settles_its_own_copy(client):
    with client.get_topic_sender("job-events") as sender:
        sender.send_messages(ServiceBusMessage("both", application_properties={"status": "failed", "attempt": 3}))
    with subscription(client, "everything") as everything:
        [copy] = everything.receive_messages(max_message_count=1, max_wait_time=WAIT)
        everything.complete_message(copy)
    with subscription(client, "failures") as failures:
        for attempt in range(2):  # maxDeliveryCount 2 on this subscription only
            [mine] = failures.receive_messages(max_message_count=1, max_wait_time=WAIT)
            assert (str(mine), mine.delivery_count) == ("both", attempt)
            failures.abandon_message(mine)
        assert failures.receive_messages(max_message_count=1, max_wait_time=1) == []
    with subscription(client, "failures", sub_queue=ServiceBusSubQueue.DEAD_LETTER) as dlq:
        [dead] = dlq.receive_messages(max_message_count=1, max_wait_time=WAIT)
        assert (str(dead), dead.dead_letter_reason) == ("both", "MaxDeliveryCountExceeded")
        dlq.complete_message(dead)
    with subscription(client, "everything") as everything:
        assert everything.receive_messages(max_message_count=1, max_wait_time=1) == []


def test_scheduled_on_the_topic_and_cancelled_everywhere(client):
    later = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)
    with client.get_topic_sender("job-events") as sender:
        keep, cancel = sender.schedule_messages(
            [ServiceBusMessage("keep", application_properties={"pool": "a"}),
             ServiceBusMessage("cancel", application_properties={"pool": "a"})], later)
        sender.cancel_scheduled_messages(cancel)
    for name in ("everything", "pool-a"):
        with subscription(client, name) as receiver:
            peeked = receiver.peek_messages(max_message_count=10)
            assert [(str(p), p.sequence_number) for p in peeked] == [("keep", keep)]
    with client.get_topic_sender("job-events") as sender:
        sender.cancel_scheduled_messages(keep)
    with subscription(client, "everything") as receiver:
        assert receiver.peek_messages(max_message_count=10) == []


def test_duplicate_detection_and_ttl_on_topics(client):
    mid = uuid.uuid4().hex
    with client.get_topic_sender("dedup-topic") as sender:
        sender.send_messages([ServiceBusMessage("first", message_id=mid), ServiceBusMessage("again", message_id=mid)])
    for name in ("one", "two"):
        with subscription(client, name, topic="dedup-topic") as receiver:
            assert [str(m) for m in drain(receiver)] == ["first"]
    with client.get_topic_sender("ttl-topic") as sender:
        sender.send_messages(ServiceBusMessage("stale"))  # the topic's default TTL is 1 s
    with subscription(client, "dlq", topic="ttl-topic", sub_queue=ServiceBusSubQueue.DEAD_LETTER) as dlq:
        dead = dlq.receive_messages(max_message_count=1, max_wait_time=WAIT)
        assert [(str(m), m.dead_letter_reason) for m in dead] == [("stale", "TTLExpiredException")]
        dlq.complete_message(dead[0])
    with subscription(client, "drop", topic="ttl-topic") as receiver:
        assert receiver.receive_messages(max_message_count=1, max_wait_time=1.5) == []


def test_what_topics_refuse(client):
    with pytest.raises(MessagingEntityNotFoundError), subscription(client, "no-such-sub") as receiver:
        receiver.receive_messages(max_message_count=1, max_wait_time=1)
    with pytest.raises(ServiceBusError, match="Cannot send to subscription"), \
            client.get_queue_sender("job-events/Subscriptions/everything") as sender:
        sender.send_messages(ServiceBusMessage("nope"))
    with pytest.raises(ServiceBusError, match="Cannot receive from topic"), \
            client.get_queue_receiver("job-events") as receiver:
        receiver.receive_messages(max_message_count=1, max_wait_time=1)


async def test_async_topic_sender_and_subscription_receiver(servicebus):
    async with AsyncServiceBusClient.from_connection_string(servicebus.connection_string) as client:
        async with client.get_topic_sender("job-events") as sender:
            await sender.send_messages(ServiceBusMessage("async", application_properties={"pool": "a"}))
        async with client.get_subscription_receiver("job-events", "pool-a") as receiver:
            [message] = await receiver.receive_messages(max_message_count=1, max_wait_time=WAIT)
            await receiver.complete_message(message)
        async with client.get_subscription_receiver("job-events", "everything") as receiver:
            [message] = await receiver.receive_messages(max_message_count=1, max_wait_time=WAIT)
            await receiver.complete_message(message)
    assert str(message) == "async"


def test_subscription_copies_survive_a_restart(servicebus_factory):
    emulator = servicebus_factory(in_memory=False)
    with ServiceBusClient.from_connection_string(emulator.connection_string) as client, \
            client.get_topic_sender("job-events") as sender:
        sender.send_messages(ServiceBusMessage("durable", application_properties={"pool": "a"}))
    emulator.restart(kill=True)
    with ServiceBusClient.from_connection_string(emulator.connection_string) as client:
        for name in ("everything", "pool-a"):
            with subscription(client, name) as receiver:
                assert [str(m) for m in drain(receiver)] == ["durable"]


def test_store_from_before_topics_is_migrated(tmp_path):
    db = sqlite3.connect(tmp_path / "servicebus.sqlite3")
    db.executescript("""
        CREATE TABLE messages (seq INTEGER PRIMARY KEY, queue TEXT NOT NULL, dead_letter INTEGER NOT NULL,
            state INTEGER NOT NULL, enqueued_ms INTEGER NOT NULL, visible_ms INTEGER NOT NULL,
            expires_ms INTEGER NOT NULL, delivery_count INTEGER NOT NULL, message_id TEXT, durable INTEGER NOT NULL,
            priority INTEGER NOT NULL, ttl_ms INTEGER, annotations BLOB NOT NULL, properties BLOB NOT NULL,
            app_properties BLOB NOT NULL, body BLOB NOT NULL, dead_letter_source TEXT);
        INSERT INTO messages VALUES (7, 'jobs', 0, 0, 1, 1, 0, 0, NULL, 0, 4, NULL, x'', x'', x'', x'00537740', NULL);
    """)
    db.close()
    store = SqliteStore(tmp_path)
    records, _, next_seq = store.load()
    assert [(r.seq, r.queue) for r in records] == [(7, "jobs")] and next_seq == 8
    twin = records[0]
    twin.queue = "t/subscriptions/s"
    store.add([twin], 8)  # the same sequence number in another subscription is allowed now
    store.remove([7], queue="jobs")
    store.close()
    assert [(r.seq, r.queue) for r in SqliteStore(tmp_path).load()[0]] == [(7, "t/subscriptions/s")]


@pytest.mark.parametrize("sub, problem", [
    ({"name": "s", "rules": [{"name": "r", "sqlFilter": "status = "}]}, "sqlFilter 'status = '"),
    ({"name": "s", "rules": [{"name": "r", "sqlFilter": "1=1", "action": {"sqlExpression": "SET x = 1"}}]},
     "rule actions"),
    ({"name": "s", "requiresSession": True}, "sessions are not supported"),
    ({"name": "s", "rules": [{"name": "r", "correlationFilter": {"colour": "red"}}]}, "correlationFilter field"),
])
def test_bad_subscriptions_are_refused_at_start_up(sub, problem):
    with pytest.raises(ConfigError, match=problem):
        topic_from_dict({"name": "t", "subscriptions": [sub]})
