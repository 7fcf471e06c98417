"""The job-requests queue, for the senders: the CLI's submit and the quota's re-send.

A connection string locally (the Service Bus emulator), the namespace and DefaultAzureCredential in Azure.
Each call opens and closes its own connection: sends are rare, and a cached AMQP link would outlive the
function invocation that made it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime

from azure.servicebus import ServiceBusClient, ServiceBusMessage, ServiceBusSubQueue

JSON_TYPE = "application/json"


class RequestQueue:
    def __init__(self, queue: str, connection_string: str | None = None, namespace: str | None = None,
                 credential: Callable[[], object] | None = None):
        self.queue = queue
        self._connection_string = connection_string
        self._namespace = namespace
        self._credential = credential

    def _client(self) -> ServiceBusClient:
        if self._connection_string:
            return ServiceBusClient.from_connection_string(self._connection_string)
        if self._namespace and self._credential:
            return ServiceBusClient(self._namespace, self._credential())
        # Checked here, not at start-up: the watchdog and the collector never send.
        raise RuntimeError("no Service Bus to send to: set ServiceBusConnection (a connection string) or "
                           "ServiceBusConnection__fullyQualifiedNamespace")

    @staticmethod
    def _message(body: bytes, message_id: str, properties: Mapping[str, object] | None) -> ServiceBusMessage:
        return ServiceBusMessage(body, message_id=message_id, content_type=JSON_TYPE,
                                 application_properties=dict(properties) if properties else None)

    def send(self, body: bytes, message_id: str, properties: Mapping[str, object] | None = None) -> None:
        with self._client() as client, client.get_queue_sender(self.queue) as sender:
            sender.send_messages(self._message(body, message_id, properties))

    def schedule(self, body: bytes, message_id: str, properties: Mapping[str, object] | None,
                 at: datetime) -> None:
        with self._client() as client, client.get_queue_sender(self.queue) as sender:
            sender.schedule_messages(self._message(body, message_id, properties), at)

    def dead_lettered(self, message_id: str, lineage_property: str, limit: int = 1000) -> str | None:
        """The dead-letter reason of a request (or of a re-send of it), looked for among the first `limit`
        dead letters by peeking, which takes nothing off the queue; None if it is not there."""
        with self._client() as client, client.get_queue_receiver(self.queue, sub_queue=ServiceBusSubQueue.DEAD_LETTER) \
                as receiver:
            seen = 0
            while seen < limit:
                batch = receiver.peek_messages(max_message_count=min(100, limit - seen))
                if not batch:
                    return None
                seen += len(batch)
                for message in batch:
                    original = text_properties(message).get(lineage_property)
                    if message.message_id == message_id or original == message_id:
                        return message.dead_letter_reason or "dead-lettered"
        return None


def text_properties(message) -> dict[str, object]:
    """A received message's application properties with text keys and values (AMQP hands back bytes)."""
    def text(value):
        return value.decode() if isinstance(value, bytes) else value

    return {text(k): text(v) for k, v in (message.application_properties or {}).items()}
