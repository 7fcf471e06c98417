"""A small Service Bus client run under one azure-servicebus release (its own venv, see the Makefile).

    python roundtrip.py CONNECTION_STRING QUEUE

Sends, receives, renews, abandons, completes and peeks through the sync and async clients, and
prints one JSON line of what it saw; the test that runs it compares that with what should be.
Only the SDK and the standard library: it runs in a venv that has nothing else.
"""

import asyncio
import json
import sys

from azure.servicebus import ServiceBusClient, ServiceBusMessage, __version__
from azure.servicebus.aio import ServiceBusClient as AsyncServiceBusClient


def sync_part(conn: str, queue: str) -> dict:
    out: dict = {}
    with ServiceBusClient.from_connection_string(conn) as client:
        with client.get_queue_sender(queue) as sender:
            sender.send_messages(ServiceBusMessage("one", application_properties={"n": 1}))
            batch = sender.create_message_batch()
            batch.add_message(ServiceBusMessage("two"))
            batch.add_message(ServiceBusMessage("three"))
            sender.send_messages(batch)
        with client.get_queue_receiver(queue) as receiver:
            got = []
            for _ in range(10):
                got += receiver.receive_messages(max_message_count=3 - len(got), max_wait_time=5)
                if len(got) >= 3:
                    break
            out["received"] = [str(m) for m in got]
            out["first_delivery_counts"] = [m.delivery_count for m in got]
            out["properties"] = {str(k, "utf-8"): v for k, v in (got[0].application_properties or {}).items()}
            receiver.renew_message_lock(got[0])
            receiver.abandon_message(got[0])
            for message in got[1:]:
                receiver.complete_message(message)
            again = receiver.receive_messages(max_message_count=1, max_wait_time=5)
            out["redelivered"] = [(str(m), m.delivery_count) for m in again]
            for message in again:
                receiver.complete_message(message)
            out["left"] = [str(m) for m in receiver.peek_messages(max_message_count=10)]
    return out


async def async_part(conn: str, queue: str) -> dict:
    async with AsyncServiceBusClient.from_connection_string(conn) as client:
        async with client.get_queue_sender(queue) as sender:
            await sender.send_messages([ServiceBusMessage("async-1"), ServiceBusMessage("async-2")])
        async with client.get_queue_receiver(queue) as receiver:
            got = []
            for _ in range(10):
                got += await receiver.receive_messages(max_message_count=2 - len(got), max_wait_time=5)
                if len(got) >= 2:
                    break
            for message in got:
                await receiver.complete_message(message)
            return {"async_received": [str(m) for m in got]}


def main() -> None:
    conn, queue = sys.argv[1], sys.argv[2]
    result = {"version": __version__, **sync_part(conn, queue)}
    result.update(asyncio.run(async_part(conn, queue)))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
