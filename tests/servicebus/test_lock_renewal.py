"""Many locks renewed at once, through the SDK's AutoLockRenewer (sync threads and async tasks).

The SDK numbers a session's transfers from a counter its concurrent renew-lock requests share
without a lock, so delivery-ids repeat or skip. Service Bus tolerates it; the emulator must too:
the connection stays up, every renewal succeeds, and no message comes back.
"""

from __future__ import annotations

import asyncio
import time
import uuid

from azure.servicebus import AutoLockRenewer, ServiceBusClient, ServiceBusMessage
from azure.servicebus.aio import AutoLockRenewer as AsyncAutoLockRenewer
from azure.servicebus.aio import ServiceBusClient as AsyncServiceBusClient

COUNT = 12
LOCK_S = 5  # the queues' lockDuration
HOLD_S = 2 * LOCK_S + 1  # every lock must be renewed at least twice


def _check(messages, bodies, failures, leftovers) -> None:
    assert sorted(str(m) for m in messages) == sorted(bodies)
    assert [m.delivery_count for m in messages] == [0] * COUNT, "a message was delivered twice"
    assert failures == [], f"renewals failed: {failures[:3]}"
    assert leftovers == [], "messages came back after completion"


def test_auto_lock_renewer_keeps_many_locks_sync(servicebus):
    bodies = [f"renew-{i}-{uuid.uuid4().hex[:6]}" for i in range(COUNT)]
    failures: list = []
    with ServiceBusClient.from_connection_string(servicebus.connection_string) as client:
        with client.get_queue_sender("renew-many") as sender:
            sender.send_messages([ServiceBusMessage(b) for b in bodies])
        with client.get_queue_receiver("renew-many") as receiver:
            messages: list = []
            deadline = time.monotonic() + 15
            while len(messages) < COUNT and time.monotonic() < deadline:
                messages += receiver.receive_messages(max_message_count=COUNT - len(messages), max_wait_time=2)
            renewer = AutoLockRenewer(max_lock_renewal_duration=60,
                                      on_lock_renew_failure=lambda m, e: failures.append((str(m), repr(e))))
            for message in messages:
                renewer.register(receiver, message)
            time.sleep(HOLD_S)
            for message in messages:
                receiver.complete_message(message)  # raises MessageLockLostError if a lock was lost
            renewer.close()
            leftovers = receiver.receive_messages(max_message_count=COUNT, max_wait_time=1)
    _check(messages, bodies, failures, leftovers)


async def test_auto_lock_renewer_keeps_many_locks_async(servicebus):
    bodies = [f"arenew-{i}-{uuid.uuid4().hex[:6]}" for i in range(COUNT)]
    failures: list = []

    async def failed(message, error) -> None:
        failures.append((str(message), repr(error)))

    async with AsyncServiceBusClient.from_connection_string(servicebus.connection_string) as client:
        async with client.get_queue_sender("renew-many-async") as sender:
            await sender.send_messages([ServiceBusMessage(b) for b in bodies])
        async with client.get_queue_receiver("renew-many-async") as receiver:
            messages: list = []
            async with asyncio.timeout(15):
                while len(messages) < COUNT:
                    messages += await receiver.receive_messages(max_message_count=COUNT - len(messages),
                                                                max_wait_time=2)
            renewer = AsyncAutoLockRenewer(max_lock_renewal_duration=60, on_lock_renew_failure=failed)
            for message in messages:
                renewer.register(receiver, message)
            await asyncio.sleep(HOLD_S)
            for message in messages:
                await receiver.complete_message(message)
            await renewer.close()
            leftovers = await receiver.receive_messages(max_message_count=COUNT, max_wait_time=1)
    _check(messages, bodies, failures, leftovers)
