"""Service Bus queue and topic-subscription trigger: peek-lock, complete on success, abandon on exception, lock
renewed meanwhile.

Poison handling is the queue's: each abandon raises the delivery count and the broker dead-letters the
message past maxDeliveryCount, as with the real extension.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re

from azure.servicebus import ServiceBusReceiveMode
from azure.servicebus.aio import AutoLockRenewer, ServiceBusClient
from azure.servicebus.exceptions import MessagingEntityNotFoundError, ServiceBusError

from .errors import HostConfigError
from .invoker import Invoker
from .loader import FunctionSpec
from .payloads import UnbindableBody, service_bus_message
from .settings import ServiceBusOptions

log = logging.getLogger("local.host.servicebus")


def endpoint_of(connection_string: str) -> str:
    """The endpoint only, for messages and logs: the connection string carries a key."""
    match = re.search(r"Endpoint=([^;]+)", connection_string, re.IGNORECASE)
    return match.group(1) if match else "<no Endpoint in connection string>"


class ServiceBusListener:
    def __init__(self, spec: FunctionSpec, connection_string: str, connection_name: str,
                 options: ServiceBusOptions, invoker: Invoker, receive_wait: float, connect_timeout: float):
        self.spec = spec
        self.topic = spec.trigger.get("topicName")
        self.subscription = spec.trigger.get("subscriptionName")
        # What the logs and messages name: the queue, or the topic's subscription as Service Bus names it.
        self.queue = f"{self.topic}/Subscriptions/{self.subscription}" if self.topic else spec.trigger["queueName"]
        self.connection_string = connection_string
        self.connection_name = connection_name
        self.options = options
        self.invoker = invoker
        self.receive_wait = receive_wait
        self.connect_timeout = connect_timeout
        self.in_flight: set[asyncio.Task] = set()
        self._free = asyncio.Semaphore(options.max_concurrent_calls)
        self._stopping = asyncio.Event()
        self._pump: asyncio.Task | None = None
        self._receiving = False

    async def start(self) -> None:
        self.client = ServiceBusClient.from_connection_string(self.connection_string)
        options = {"receive_mode": ServiceBusReceiveMode.PEEK_LOCK, "prefetch_count": self.options.prefetch_count}
        if self.topic:
            self.receiver = self.client.get_subscription_receiver(self.topic, self.subscription, **options)
        else:
            self.receiver = self.client.get_queue_receiver(self.queue, **options)
        kind = "subscription" if self.topic else "queue"
        where = (f"function {self.spec.name!r}: {kind} {self.queue!r} at {endpoint_of(self.connection_string)} "
                 f"(setting {self.connection_name!r})")
        try:
            # Opening the link now makes a wrong queue name or a stopped emulator fail start-up, not later.
            await asyncio.wait_for(self.receiver.__aenter__(), self.connect_timeout)
        except MessagingEntityNotFoundError:
            await self._close_clients()
            flag = f"--subscription {self.topic}/{self.subscription}" if self.topic else f"--queue {self.queue}"
            raise HostConfigError(f"{where} does not exist; create it (e.g. `python -m local.servicebus "
                                  f"{flag}`) or fix the {kind} name") from None
        except (TimeoutError, ServiceBusError, OSError) as exc:
            await self._close_clients()
            raise HostConfigError(f"{where}: cannot connect ({type(exc).__name__}); start the Service Bus "
                                  "emulator or fix the connection string") from None
        self.renewer = AutoLockRenewer(
            max_lock_renewal_duration=self.options.max_auto_lock_renewal.total_seconds())
        self._pump = asyncio.create_task(self._receive_loop(), name=f"servicebus:{self.spec.name}")
        log.info("listening", extra={"function": self.spec.name, "queue": self.queue,
                                     "max_concurrent_calls": self.options.max_concurrent_calls})

    async def _receive_loop(self) -> None:
        backoff = 0.5
        while not self._stopping.is_set():
            await self._free.acquire()  # at least one slot before asking for messages
            free = 1
            while free < self.options.max_concurrent_calls and not self._free.locked():
                await self._free.acquire()
                free += 1
            if self._stopping.is_set():
                break
            self._receiving = True
            try:
                messages = await self.receiver.receive_messages(
                    max_message_count=free, max_wait_time=self.receive_wait)
                backoff = 0.5
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("receive failed; retrying", extra={"function": self.spec.name, "queue": self.queue,
                                                                "error": f"{type(exc).__name__}: {exc}"})
                messages = []
                self._receiving = False
                await self._wait_stopping(backoff)
                backoff = min(backoff * 2, 10.0)
            finally:
                self._receiving = False
            for _ in range(free - len(messages)):
                self._free.release()
            for message in messages:
                task = asyncio.create_task(self._handle(message))
                self.in_flight.add(task)
                task.add_done_callback(self.in_flight.discard)

    async def _wait_stopping(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def _handle(self, message) -> None:
        try:
            self.renewer.register(self.receiver, message)
            try:
                try:
                    payload = service_bus_message(message)
                except UnbindableBody as exc:
                    log.error("the message cannot be bound to the function; it is abandoned, and dead-lettered "
                              "after maxDeliveryCount", extra={"function": self.spec.name,
                                                               "message_id": message.message_id, "error": str(exc)})
                    raise
                await self.invoker.invoke(
                    self.spec, payload, f"Reason='New ServiceBus message detected on '{self.queue}'.'",
                    message_id=message.message_id, delivery_count=(message.delivery_count or 0) + 1)
            except Exception:
                await self._settle("abandon", message)
            else:
                if self.options.auto_complete:
                    await self._settle("complete", message)
        finally:
            self._free.release()

    async def _settle(self, how: str, message) -> None:
        try:
            if how == "complete":
                await self.receiver.complete_message(message)
            else:
                await self.receiver.abandon_message(message)
        except Exception as exc:
            # Lock lost or link gone: the broker redelivers after the lock expires; nothing else to do.
            log.warning(f"{how} failed; the message will be redelivered",
                        extra={"function": self.spec.name, "message_id": message.message_id,
                               "error": f"{type(exc).__name__}: {exc}"})

    async def stop_receiving(self) -> None:
        self._stopping.set()
        if self._pump is None:
            return
        # Cancelling mid-receive could strand messages the link already took; so a receive in progress
        # is let finish (it returns within receive_wait) and its messages are processed like the rest.
        if not self._receiving:
            self._pump.cancel()
        try:
            await asyncio.wait_for(asyncio.shield(self._pump), self.receive_wait + 5)
        except (TimeoutError, asyncio.CancelledError):
            self._pump.cancel()
            await asyncio.gather(self._pump, return_exceptions=True)

    async def drain(self, timeout: float) -> int:
        """Wait for running invocations; return how many were still running at the deadline."""
        if self.in_flight:
            await asyncio.wait(list(self.in_flight), timeout=max(timeout, 0))
        return len(self.in_flight)

    async def close(self) -> None:
        for task in list(self.in_flight):
            task.cancel()
        await asyncio.gather(*self.in_flight, return_exceptions=True)
        if hasattr(self, "renewer"):
            await self.renewer.close()
        await self._close_clients()

    async def _close_clients(self) -> None:
        for closer in (getattr(self, "receiver", None), getattr(self, "client", None)):
            if closer is not None:
                try:
                    await closer.close()
                except Exception as exc:  # closing after the broker went away must not stop the shutdown
                    log.debug("close failed", extra={"error": repr(exc)})
