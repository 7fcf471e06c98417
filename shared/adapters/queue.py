"""The job-requests queue, for the senders: the CLI's submit and the quota's re-send.

A connection string locally (the Service Bus emulator), the namespace and DefaultAzureCredential in Azure.
Each call opens and closes its own connection: sends are rare, and a cached AMQP link would outlive the
function invocation that made it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime

from azure.servicebus import ServiceBusClient, ServiceBusMessage

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
