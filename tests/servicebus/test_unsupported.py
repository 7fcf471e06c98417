"""What the emulator does not implement is refused, with Service Bus's error where Azure has one,
never accepted and ignored: sessions, transactions, receiver filters, queue properties; and entities
that were not declared."""

from __future__ import annotations

import time

import pytest
from azure.servicebus import NEXT_AVAILABLE_SESSION, ServiceBusClient, ServiceBusMessage
from azure.servicebus.exceptions import MessagingEntityNotFoundError, ServiceBusError
from proton import Message
from proton.utils import BlockingConnection

from local.servicebus.config import ConfigError, queue_from_dict
from tests.fixtures.servicebus import receive_count
from tests.servicebus.test_errors import _sas


@pytest.mark.parametrize("session", ["A", NEXT_AVAILABLE_SESSION])
def test_session_receiver_is_refused_with_service_bus_error(servicebus, session):
    with ServiceBusClient.from_connection_string(servicebus.connection_string, retry_total=0) as client:
        with client.get_queue_sender("sessions") as sender:
            sender.send_messages([ServiceBusMessage("for A", session_id="A"), ServiceBusMessage("for B", session_id="B")])
        with pytest.raises(ServiceBusError, match="sessionful message receiver cannot be created") as caught, \
                client.get_queue_receiver("sessions", session_id=session, max_wait_time=2) as receiver:
            receiver.receive_messages(max_message_count=5, max_wait_time=2)
        assert type(caught.value) is ServiceBusError and "Error condition: amqp:not-allowed" in str(caught.value)
        # The messages are untouched, and a plain receiver gets both (with their session ids).
        with client.get_queue_receiver("sessions") as receiver:
            got = receive_count(receiver, 2)
            for message in got:
                receiver.complete_message(message)
    assert sorted((str(m), m.session_id) for m in got) == [("for A", "A"), ("for B", "B")]


def test_undeclared_topic_and_subscription_are_not_found(servicebus):
    with ServiceBusClient.from_connection_string(servicebus.connection_string, retry_total=0) as client:
        with pytest.raises(MessagingEntityNotFoundError), client.get_topic_sender("some-topic") as sender:
            sender.send_messages(ServiceBusMessage("x"))
        with pytest.raises(MessagingEntityNotFoundError), \
                client.get_subscription_receiver("some-topic", "sub") as receiver:
            receiver.receive_messages(max_message_count=1, max_wait_time=1)


def _raw_connection(servicebus):
    """A plain AMQP client (proton's), authorised with a SAS token, for what the SDK never sends."""
    audience = f"sb://127.0.0.1:{servicebus.port}/"
    conn = BlockingConnection(f"amqp://127.0.0.1:{servicebus.port}", allowed_mechs="ANONYMOUS", timeout=10)
    reply = conn.create_receiver("$cbs", name="cbs-in")
    sender = conn.create_sender("$cbs", name="cbs-out")
    sender.send(Message(body=_sas(audience, int(time.time()) + 3600), reply_to="cbs-in",
                        properties={"operation": "put-token", "type": "servicebus.windows.net:sastoken",
                                    "name": audience}))
    answer = reply.receive(timeout=10)
    reply.accept()
    assert answer.properties["status-code"] == 202
    return conn


def test_receiver_filter_other_than_sessions_is_refused(servicebus):
    from proton import Described, symbol
    from proton.reactor import Filter
    from proton.utils import LinkDetached

    conn = _raw_connection(servicebus)
    try:
        selector = Filter({symbol("apache.org:selector-filter:string"):
                           Described(symbol("apache.org:selector-filter:string"), "colour = 'red'")})
        with pytest.raises(LinkDetached, match="not-implemented"):
            conn.create_receiver("sessions", options=selector)
    finally:
        conn.close()


def test_transaction_coordinator_is_refused(servicebus):
    from proton import Terminus
    from proton.reactor import LinkOption
    from proton.utils import LinkDetached

    class Coordinator(LinkOption):
        def apply(self, link):
            link.target.type = Terminus.COORDINATOR

    conn = _raw_connection(servicebus)
    try:
        with pytest.raises(LinkDetached, match="Transactions are not supported"):
            conn.create_sender(None, options=Coordinator())
    finally:
        conn.close()


@pytest.mark.parametrize("field", ["requiresSession", "forwardTo", "enablePartitioning", "autoDeleteOnIdle"])
def test_unsupported_queue_properties_are_refused(field):
    with pytest.raises(ConfigError, match="not supported by the local emulator"):
        queue_from_dict({"name": "q", field: True if field != "forwardTo" else "other"})
    queue_from_dict({"name": "q", "requiresSession": False})  # off is what the emulator does
