"""AMQP over TLS with the development certificate, and Entra ID tokens from the local issuer through
DefaultAzureCredential: the way today's samples connect (a namespace and a credential), unmodified."""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import time
import urllib.error
import urllib.request

import jwt
import pytest
from azure.core.credentials import AccessToken
from azure.identity import DefaultAzureCredential
from azure.identity.aio import DefaultAzureCredential as AsyncDefaultAzureCredential
from azure.servicebus import ServiceBusClient, ServiceBusMessage, TransportType
from azure.servicebus.aio import ServiceBusClient as AsyncServiceBusClient
from azure.servicebus.exceptions import ServiceBusAuthenticationError
from cryptography.hazmat.primitives.asymmetric import rsa

from local.servicebus import DEV_KEY, DEV_KEY_NAME, identity
from tests.fixtures.servicebus import start_emulator


@pytest.fixture
def local_identity(servicebus, monkeypatch):
    """What a developer exports so DefaultAzureCredential gets its tokens from the emulator."""
    monkeypatch.setenv("IDENTITY_ENDPOINT", f"http://127.0.0.1:{servicebus.port}{identity.IDENTITY_PATH}")
    monkeypatch.setenv("IDENTITY_HEADER", identity.DEV_IDENTITY_HEADER)
    for name in ("AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET", "AZURE_TENANT_ID", "AZURE_FEDERATED_TOKEN_FILE",
                 "MSI_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)


def _tls(servicebus, **extra) -> dict:
    # The emulator's TLS port is not 5671 here (tests pick free ports); a custom endpoint names it.
    return {"connection_verify": str(servicebus.ca_file), "transport_type": TransportType.Amqp,
            "custom_endpoint_address": f"sb://localhost:{servicebus.tls_port}", **extra}


def _roundtrip(client: ServiceBusClient, queue: str, body: str) -> str:
    with client.get_queue_sender(queue) as sender:
        sender.send_messages(ServiceBusMessage(body))
    with client.get_queue_receiver(queue) as receiver:
        [message] = receiver.receive_messages(max_message_count=1, max_wait_time=10)
        receiver.complete_message(message)
    return str(message)


def test_tls_with_the_development_certificate_and_sas(servicebus):
    conn = f"Endpoint=sb://localhost;SharedAccessKeyName={DEV_KEY_NAME};SharedAccessKey={DEV_KEY}"
    with ServiceBusClient.from_connection_string(conn, **_tls(servicebus)) as client:
        assert _roundtrip(client, "tls", "over tls") == "over tls"


def test_tls_refuses_clients_that_do_not_trust_the_development_ca(servicebus):
    context = ssl.create_default_context()  # the system's trust store: no dev CA in it
    with socket.create_connection(("127.0.0.1", servicebus.tls_port), timeout=5) as raw, \
            pytest.raises(ssl.SSLCertVerificationError):
        context.wrap_socket(raw, server_hostname="localhost")
    trusted = ssl.create_default_context(cafile=str(servicebus.ca_file))
    with socket.create_connection(("127.0.0.1", servicebus.tls_port), timeout=5) as raw, \
            trusted.wrap_socket(raw, server_hostname="localhost") as tls:
        tls.sendall(b"AMQP\x03\x01\x00\x00")
        assert tls.recv(8) == b"AMQP\x03\x01\x00\x00"


def test_default_azure_credential_gets_a_token_the_broker_accepts_sync(servicebus, local_identity):
    credential = DefaultAzureCredential()
    with ServiceBusClient("localhost", credential, **_tls(servicebus)) as client:
        assert _roundtrip(client, "identity", "with entra id") == "with entra id"
    token = credential.get_token("https://servicebus.azure.net//.default")
    claims = jwt.decode(token.token, options={"verify_signature": False})
    assert claims["aud"] == "https://servicebus.azure.net" and claims["iss"] == identity.ISSUER


async def test_default_azure_credential_async_over_websocket_and_tls(servicebus, local_identity):
    async with AsyncDefaultAzureCredential() as credential, AsyncServiceBusClient(
            "localhost", credential, connection_verify=str(servicebus.ca_file),
            transport_type=TransportType.AmqpOverWebsocket,
            custom_endpoint_address=f"sb://localhost:{servicebus.tls_port}") as client:
        async with client.get_queue_sender("identity") as sender:
            await sender.send_messages(ServiceBusMessage("wss and entra id"))
        async with client.get_queue_receiver("identity") as receiver:
            async with asyncio.timeout(15):
                messages = []
                while not messages:
                    messages = await receiver.receive_messages(max_message_count=1, max_wait_time=5)
            await receiver.complete_message(messages[0])
    assert str(messages[0]) == "wss and entra id"


class _Fixed:
    """A credential handing out a given token while claiming it is good for an hour."""

    def __init__(self, token: str) -> None:
        self.token = token

    def get_token(self, *scopes, **kwargs) -> AccessToken:
        return AccessToken(self.token, int(time.time()) + 3600)


def _foreign_token() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = int(time.time())
    return jwt.encode({"aud": identity.SERVICE_BUS_AUDIENCE, "iss": identity.ISSUER, "nbf": now - 60,
                       "exp": now + 3600}, key, algorithm="RS256")


def _issued(servicebus, **claims) -> str:
    issuer = identity.Issuer((servicebus.tls_dir / "issuer-key.pem").read_bytes())
    token, _ = issuer.issue(identity.SERVICE_BUS_AUDIENCE)
    decoded = jwt.decode(token, options={"verify_signature": False})
    decoded.update(claims)
    return jwt.encode(decoded, issuer._key, algorithm="RS256")


@pytest.mark.parametrize("make, reason", [
    (lambda sb: _foreign_token(), "InvalidSignature"),
    (lambda sb: _issued(sb, exp=int(time.time()) - 10), "ExpiredToken"),
    (lambda sb: _issued(sb, aud="https://storage.azure.com"), "InvalidAudience"),
    (lambda sb: "not.a.jwt", "InvalidToken"),
])
def test_wrong_or_expired_tokens_are_refused(servicebus, make, reason):
    # Plain AMQP: with a custom endpoint (the TLS tests' way to a non-5671 port) the SDK reports every
    # authentication failure as ServiceBusConnectionError, which would hide which refusal this is.
    namespace = f"127.0.0.1:{servicebus.port}"
    with ServiceBusClient(namespace, _Fixed(make(servicebus)), retry_total=0, use_tls=False) as client, \
            pytest.raises(ServiceBusAuthenticationError), \
            client.get_queue_sender("identity") as sender:
        sender.send_messages(ServiceBusMessage("refused"))
    # The SDK does not show the broker's words; the broker's log has them.
    refusals = [json.loads(line) for line in servicebus.log_tail(200).splitlines() if '"token_refused"' in line]
    assert refusals and refusals[-1]["reason"].startswith(reason)


def test_identity_endpoint_wants_its_header(servicebus):
    url = f"http://127.0.0.1:{servicebus.port}{identity.IDENTITY_PATH}?api-version=2019-08-01&resource=x"
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(url, timeout=5)
    assert refused.value.code == 401 and "IDENTITY_HEADER" in json.loads(refused.value.read())["error_description"]
    request = urllib.request.Request(url, headers={"X-IDENTITY-HEADER": identity.DEV_IDENTITY_HEADER})
    with urllib.request.urlopen(request, timeout=5) as answer:
        body = json.loads(answer.read())
    assert body["resource"] == "x" and body["token_type"] == "Bearer" and int(body["expires_on"]) > time.time()


def test_namespace_and_credential_as_the_samples_write_them(tmp_path, monkeypatch):
    """Port 5671, as in Azure: no custom endpoint, only the CA to trust (skipped if 5671 is taken)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the emulator binds
        try:
            probe.bind(("127.0.0.1", 5671))
        except OSError:
            pytest.skip("port 5671 is in use on this machine")
    from local.servicebus.control import ServiceBusProcess
    emulator = ServiceBusProcess(tmp_path, [{"name": "samples"}], port=0, tls_port=5671).start(20)
    try:
        monkeypatch.setenv("IDENTITY_ENDPOINT", f"http://127.0.0.1:{emulator.connection_string.split(':')[2].split(';')[0]}"
                                                f"{identity.IDENTITY_PATH}")
        monkeypatch.setenv("IDENTITY_HEADER", identity.DEV_IDENTITY_HEADER)
        with ServiceBusClient("localhost", DefaultAzureCredential(),
                              connection_verify=str(emulator.ca_file)) as client:
            assert _roundtrip(client, "samples", "as in the samples") == "as in the samples"
    finally:
        emulator.stop()


def test_restart_keeps_the_certificate(tmp_path):
    first = start_emulator(tmp_path, [{"name": "q"}], tls=True)
    ca = first.ca_file.read_bytes()
    first.restart()
    try:
        assert first.ca_file.read_bytes() == ca
    finally:
        first.stop()
