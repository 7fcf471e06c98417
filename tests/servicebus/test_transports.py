"""AMQP over WebSocket (`/$servicebus/websocket`, subprotocol AMQPWSB10) through the unmodified SDK,
and the handshake's refusals, on the emulator's one port (the first bytes say which protocol)."""

from __future__ import annotations

import base64
import os
import socket
import struct

import pytest
from azure.servicebus import ServiceBusClient, ServiceBusMessage, TransportType
from azure.servicebus.aio import ServiceBusClient as AsyncServiceBusClient

from tests.fixtures.servicebus import receive_count


def _ws_options(servicebus) -> dict:
    # With UseDevelopmentEmulator the SDK drops the port from its WebSocket URL (sync goes to 80, async
    # to 443); a custom endpoint names the emulator's port, as it would a proxy or gateway in Azure.
    return {"transport_type": TransportType.AmqpOverWebsocket,
            "custom_endpoint_address": f"sb://127.0.0.1:{servicebus.port}"}


def test_websocket_send_receive_settle_sync(servicebus):
    with ServiceBusClient.from_connection_string(servicebus.connection_string, **_ws_options(servicebus)) as client:
        with client.get_queue_sender("websocket") as sender:
            sender.send_messages([ServiceBusMessage(f"ws-{i}") for i in range(3)])
            sender.send_messages(ServiceBusMessage(b"x" * 200_000))  # several WebSocket frames
        with client.get_queue_receiver("websocket") as receiver:
            got = receive_count(receiver, 4)
            receiver.abandon_message(got[0])
            for message in got[1:]:
                receiver.complete_message(message)
            [again] = receiver.receive_messages(max_message_count=1, max_wait_time=5)
            assert (str(again), again.delivery_count) == ("ws-0", 1)
            receiver.complete_message(again)
    assert [len(str(m)) for m in got] == [4, 4, 4, 200_000]


async def test_websocket_send_receive_settle_async(servicebus):
    async with AsyncServiceBusClient.from_connection_string(servicebus.connection_string,
                                                            **_ws_options(servicebus)) as client:
        async with client.get_queue_sender("websocket-async") as sender:
            await sender.send_messages([ServiceBusMessage("a1"), ServiceBusMessage("a2")])
        async with client.get_queue_receiver("websocket-async") as receiver:
            got = []
            while len(got) < 2:
                batch = await receiver.receive_messages(max_message_count=2, max_wait_time=5)
                assert batch
                got += batch
            for message in got:
                await receiver.renew_message_lock(message)
                await receiver.complete_message(message)
    assert sorted(str(m) for m in got) == ["a1", "a2"]


def _handshake(port: int, path: str = "/$servicebus/websocket", protocol: str | None = "AMQPWSB10") -> tuple:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    key = base64.b64encode(os.urandom(16)).decode()
    request = (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n")
    if protocol:
        request += f"Sec-WebSocket-Protocol: {protocol}\r\n"
    sock.sendall((request + "\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        if not chunk:
            break
        head += chunk
    return sock, head


def _client_frame(opcode: int, payload: bytes) -> bytes:
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes((0x80 | opcode, 0x80 | len(payload))) + mask + masked


def test_websocket_handshake_answers_pings_and_refuses_what_is_not_amqp(servicebus):
    sock, head = _handshake(servicebus.port)
    with sock:
        assert head.startswith(b"HTTP/1.1 101 ") and b"Sec-WebSocket-Protocol: AMQPWSB10" in head
        sock.sendall(_client_frame(0x9, b"ping!"))
        assert sock.recv(64) == b"\x8a\x05ping!"
        # The AMQP header inside a binary frame gets the broker's SASL header back, framed.
        sock.sendall(_client_frame(0x2, b"AMQP\x03\x01\x00\x00"))
        reply = sock.recv(4096)
        assert reply[0] == 0x82 and reply[2:10] == b"AMQP\x03\x01\x00\x00"
    for path, protocol, status in (("/other", "AMQPWSB10", b"404"), ("/$servicebus/websocket", None, b"400")):
        sock, head = _handshake(servicebus.port, path, protocol)
        with sock:
            assert head.split(b" ")[1] == status
            while sock.recv(4096):  # the rest of the answer, then the broker closes the connection
                pass


def test_unmasked_client_frame_closes_with_protocol_error(servicebus):
    sock, head = _handshake(servicebus.port)
    with sock:
        assert head.startswith(b"HTTP/1.1 101 ")
        sock.sendall(b"\x82\x04AMQP")  # not masked: RFC 6455 says close with 1002
        assert sock.recv(64) == b"\x88\x02" + struct.pack(">H", 1002)


@pytest.mark.parametrize("garbage", [b"GET / HTTP/1.0\r\n\r\n", b"\x16\x03\x01\x00\x05hello"])
def test_other_clients_keep_being_served_after_refusals(servicebus, garbage):
    with socket.create_connection(("127.0.0.1", servicebus.port), timeout=5) as sock:
        sock.sendall(garbage)
        sock.recv(4096)
    with ServiceBusClient.from_connection_string(servicebus.connection_string) as client, \
            client.get_queue_sender("websocket") as sender:
        sender.send_messages(ServiceBusMessage("still fine"))
    with ServiceBusClient.from_connection_string(servicebus.connection_string) as client, \
            client.get_queue_receiver("websocket") as receiver:
        [message] = receiver.receive_messages(max_message_count=1, max_wait_time=5)
        receiver.complete_message(message)
