"""The async SDK against the emulator: the same wire, a different client stack."""

from __future__ import annotations

import asyncio
import datetime as dt

from azure.servicebus import ServiceBusMessage, ServiceBusSubQueue
from azure.servicebus.aio import ServiceBusClient


async def test_async_send_receive_complete(servicebus):
    async with ServiceBusClient.from_connection_string(servicebus.connection_string) as client:
        async with client.get_queue_sender("async-basic") as sender:
            batch = await sender.create_message_batch()
            for i in range(5):
                batch.add_message(ServiceBusMessage(f"a{i}"))
            await sender.send_messages(batch)
        async with client.get_queue_receiver("async-basic") as receiver:
            got = []
            while len(got) < 5:
                messages = await receiver.receive_messages(max_message_count=5, max_wait_time=5)
                assert messages
                for message in messages:
                    await receiver.complete_message(message)
                got += [str(m) for m in messages]
            assert got == [f"a{i}" for i in range(5)]


async def test_async_abandon_defer_dead_letter_renew(servicebus):
    async with ServiceBusClient.from_connection_string(servicebus.connection_string) as client:
        async with client.get_queue_sender("async-settle") as sender:
            await sender.send_messages([ServiceBusMessage("x"), ServiceBusMessage("y")])
        async with client.get_queue_receiver("async-settle") as receiver:
            first, second = await _receive(receiver, 2)
            await receiver.abandon_message(first)
            await receiver.renew_message_lock(second)
            await receiver.defer_message(second)
            (again,) = await _receive(receiver, 1)
            assert again.delivery_count == first.delivery_count + 1
            await receiver.dead_letter_message(again, reason="Nope", error_description="bad x")
            (deferred,) = await receiver.receive_deferred_messages([second.sequence_number])
            await receiver.complete_message(deferred)
        async with client.get_queue_receiver("async-settle", sub_queue=ServiceBusSubQueue.DEAD_LETTER) as dlq:
            (dead,) = await _receive(dlq, 1)
            assert (str(dead), dead.dead_letter_reason, dead.dead_letter_error_description) == ("x", "Nope", "bad x")
            await dlq.complete_message(dead)


async def test_async_schedule_cancel_and_peek(servicebus):
    async with ServiceBusClient.from_connection_string(servicebus.connection_string) as client:
        later = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)
        async with client.get_queue_sender("async-schedule") as sender:
            seqs = await sender.schedule_messages([ServiceBusMessage("s1"), ServiceBusMessage("s2")], later)
            await sender.cancel_scheduled_messages(seqs[0])
        async with client.get_queue_receiver("async-schedule") as receiver:
            peeked = await receiver.peek_messages(max_message_count=10)
            assert [(str(p), p.sequence_number) for p in peeked] == [("s2", seqs[1])]
            assert await receiver.receive_messages(max_message_count=1, max_wait_time=0.5) == []
        async with client.get_queue_sender("async-schedule") as sender:
            await sender.cancel_scheduled_messages(seqs[1])


async def _receive(receiver, count: int) -> list:
    got: list = []
    async with asyncio.timeout(15):
        while len(got) < count:
            got += await receiver.receive_messages(max_message_count=count - len(got), max_wait_time=5)
    return got
