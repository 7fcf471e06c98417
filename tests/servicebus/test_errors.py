"""Refusals the SDK must see as Service Bus errors: unknown entity, bad credentials, oversized messages."""

from __future__ import annotations

import time
import uuid

import pytest
from azure.core.credentials import AccessToken
from azure.servicebus import ServiceBusClient, ServiceBusMessage
from azure.servicebus.exceptions import (
    MessageSizeExceededError,
    MessagingEntityNotFoundError,
    ServiceBusAuthenticationError,
)

from local.servicebus import DEV_KEY, DEV_KEY_NAME, connection_string


def test_send_to_missing_queue_is_entity_not_found(servicebus):
    with ServiceBusClient.from_connection_string(servicebus.connection_string, retry_total=0) as client:
        # The SDK attaches on entering the context, so that is where the refusal surfaces.
        with pytest.raises(MessagingEntityNotFoundError), client.get_queue_sender("no-such-queue") as sender:
            sender.send_messages(ServiceBusMessage("lost"))
        with pytest.raises(MessagingEntityNotFoundError), client.get_queue_receiver("no-such-queue") as receiver:
            receiver.receive_messages(max_message_count=1, max_wait_time=1)


def test_wrong_key_is_refused(servicebus):
    wrong = connection_string("127.0.0.1", servicebus.port, key="bm90IHRoZSBkZXYga2V5")
    client = ServiceBusClient.from_connection_string(wrong, retry_total=0)
    with client, pytest.raises(ServiceBusAuthenticationError), client.get_queue_sender("auth") as sender:
        sender.send_messages(ServiceBusMessage("nope"))
    # The right key still works afterwards.
    with ServiceBusClient.from_connection_string(servicebus.connection_string) as client:
        with client.get_queue_sender("auth") as sender:
            sender.send_messages(ServiceBusMessage("yes"))
        with client.get_queue_receiver("auth") as receiver:
            got = receiver.receive_messages(max_message_count=5, max_wait_time=5)
            assert [str(m) for m in got] == ["yes"]
            receiver.complete_message(got[0])


def _sas(audience: str, expiry: int) -> str:
    # Built here rather than with the SDK's helper so the test states the signing rule it relies on.
    import base64
    import hashlib
    import hmac
    from urllib.parse import quote_plus, urlencode

    signature = base64.b64encode(
        hmac.new(DEV_KEY.encode(), f"{quote_plus(audience)}\n{expiry}".encode(), hashlib.sha256).digest()
    )
    return "SharedAccessSignature " + urlencode({"sr": audience, "sig": signature, "se": str(expiry),
                                                 "skn": DEV_KEY_NAME})


class _FixedToken:
    """A credential handing out a fixed SAS token while claiming it is valid for another hour,
    so the SDK sends it and the broker, not the client, has to notice the expiry."""

    def __init__(self, token: str) -> None:
        self.token = token

    def get_token(self, *scopes: str, **kwargs) -> AccessToken:
        return AccessToken(self.token, int(time.time()) + 3600)


def test_expired_token_is_refused_and_valid_token_accepted(servicebus):
    namespace = f"127.0.0.1:{servicebus.port}"
    audience = f"sb://{namespace}/auth"
    expired = _FixedToken(_sas(audience, int(time.time()) - 60))
    client = ServiceBusClient(namespace, expired, retry_total=0, use_tls=False)
    with client, pytest.raises(ServiceBusAuthenticationError), client.get_queue_sender("auth") as sender:
        sender.send_messages(ServiceBusMessage("late"))
    valid = _FixedToken(_sas(audience, int(time.time()) + 600))
    body = str(uuid.uuid4())
    with ServiceBusClient(namespace, valid, retry_total=0, use_tls=False) as client:
        with client.get_queue_sender("auth") as sender:
            sender.send_messages(ServiceBusMessage(body))
        with client.get_queue_receiver("auth") as receiver:
            got = receiver.receive_messages(max_message_count=5, max_wait_time=5)
            assert [str(m) for m in got] == [body]
            receiver.complete_message(got[0])


def test_oversized_message_refused_and_broker_keeps_serving(servicebus):
    with ServiceBusClient.from_connection_string(servicebus.connection_string, retry_total=0) as client:
        with client.get_queue_sender("oversize") as sender:
            with pytest.raises(MessageSizeExceededError):
                sender.send_messages(ServiceBusMessage(b"x" * (300 * 1024)))
            sender.send_messages(ServiceBusMessage(b"y" * (200 * 1024)))  # under 256 KB, same link
            batch = sender.create_message_batch()
            assert batch.max_size_in_bytes == 256 * 1024  # the limit the broker advertises on attach
        with client.get_queue_receiver("oversize") as receiver:
            got = receiver.receive_messages(max_message_count=5, max_wait_time=5)
            assert [len(next(m.body)) for m in got] == [200 * 1024]
            receiver.complete_message(got[0])
