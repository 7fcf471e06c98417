"""AMQP value and sequence bodies reach a function as the host's Service Bus extension binds them."""

from __future__ import annotations

import uuid

from azure.servicebus import ServiceBusClient, ServiceBusSubQueue
from azure.servicebus.amqp import AmqpAnnotatedMessage

from tests.host.conftest import read_records
from tests.waiting import wait_until


def test_a_string_value_body_is_bound_and_other_bodies_are_dead_lettered_unbound(app_dir, start_host, records,
                                                                                host_servicebus):
    conn = host_servicebus.connection_string
    start_host(app_dir, "sb_echo")
    text, number, sequence = (uuid.uuid4().hex for _ in range(3))
    with ServiceBusClient.from_connection_string(conn) as client, client.get_queue_sender("host-ok") as sender:
        sender.send_messages([
            AmqpAnnotatedMessage(value_body='{"poolId": "p1"}', properties={"message_id": text}),
            AmqpAnnotatedMessage(value_body=42, properties={"message_id": number}),
            AmqpAnnotatedMessage(sequence_body=[[1, 2]], properties={"message_id": sequence}),
        ])

    [got] = wait_until(lambda: read_records(records, "sb_echo"), timeout=15, what="the string body's invocation")
    assert (got["message_id"], got["body"]) == (text, '{"poolId": "p1"}')
    dead: dict[str, str] = {}
    with ServiceBusClient.from_connection_string(conn) as client, client.get_queue_receiver(
            "host-ok", sub_queue=ServiceBusSubQueue.DEAD_LETTER) as dlq:
        def both_dead() -> bool:
            for message in dlq.receive_messages(max_message_count=10, max_wait_time=1):
                dead[message.message_id] = message.dead_letter_reason
                dlq.complete_message(message)
            return {number, sequence} <= set(dead)

        wait_until(both_dead, timeout=30, what="the unbindable messages in the dead-letter queue")
    assert dead == {number: "MaxDeliveryCountExceeded", sequence: "MaxDeliveryCountExceeded"}
    assert [r["message_id"] for r in read_records(records, "sb_echo")] == [text], "never invoked for the others"
