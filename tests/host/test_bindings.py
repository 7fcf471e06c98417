"""Input and output bindings through the dev host: blob in and out, Service Bus out, storage queue out,
with the types the Python worker passes and the host's binding expressions."""

from __future__ import annotations

import base64
import json
import uuid

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.servicebus import ServiceBusClient, ServiceBusMessage
from azure.storage.queue import QueueClient

from local.host import HostConfigError
from tests.host.conftest import call, read_records
from tests.waiting import wait_until


def queue_texts(connection: str, queue: str, expected: int) -> list[str]:
    """Messages the output binding wrote, decoded as a queue trigger would (base64, the default)."""
    client = QueueClient.from_connection_string(connection, queue)
    got: list[str] = []

    def more() -> bool:
        for message in client.receive_messages(messages_per_page=32, visibility_timeout=30):
            got.append(base64.b64decode(message.content).decode())
            client.delete_message(message)
        return len(got) >= expected

    wait_until(more, timeout=15, what=f"{expected} messages on storage queue {queue}")
    return got


def test_http_function_reads_a_blob_and_writes_blob_servicebus_and_queue(app_dir, start_host, records,
                                                                         blob_service, container_name,
                                                                         azurite_connection_string,
                                                                         host_servicebus):
    container = blob_service.get_container_client(container_name)
    container.create_container()
    container.upload_blob("in/report.txt", b"hello bindings")
    host = start_host(app_dir, "http_bindings")

    status, _, body = call(f"{host.url}/api/bind/report.txt", method="POST", body=b"tester")
    assert (status, body) == (200, b"hello bindings")
    [seen] = read_records(records, "http_bindings")
    assert seen == {**seen, "stream": True, "name": f"{container_name}/in/report.txt", "length": 14}
    assert container.download_blob("out/report.txt").readall() == b"HELLO BINDINGS"
    assert queue_texts(azurite_connection_string, container_name, 1) == ["copied report.txt"]
    with ServiceBusClient.from_connection_string(host_servicebus.connection_string) as client, \
            client.get_queue_receiver("host-out") as receiver:
        [note] = receiver.receive_messages(max_message_count=1, max_wait_time=10)
        receiver.complete_message(note)
    assert json.loads(str(note)) == {"copied": "report.txt", "by": "tester"}

    # A missing input blob is None, and the function decides (here: 404, nothing written).
    assert call(f"{host.url}/api/bind/missing.txt", method="POST", body=b"x")[0] == 404
    with pytest.raises(ResourceNotFoundError):
        container.download_blob("out/missing.txt").readall()


def test_trigger_with_json_expression_input_and_return_output(app_dir, start_host, records, blob_service,
                                                               container_name, azurite_connection_string,
                                                               host_servicebus):
    container = blob_service.get_container_client(container_name)
    container.create_container()
    container.upload_blob("jobs/j-7.json", json.dumps({"job": "j-7"}).encode())
    container.upload_blob("jobs/j-bad.json", json.dumps({"job": "fail"}).encode())
    start_host(app_dir, "sb_forward")
    with ServiceBusClient.from_connection_string(host_servicebus.connection_string) as client, \
            client.get_queue_sender("host-forward") as sender:
        sender.send_messages([ServiceBusMessage(json.dumps({"jobId": "j-bad"}), message_id=uuid.uuid4().hex),
                              ServiceBusMessage(json.dumps({"jobId": "j-7"}))])

    assert queue_texts(azurite_connection_string, container_name, 1) == ["forwarded j-7"]
    runs = wait_until(lambda: len(read_records(records, "sb_forward")) >= 3 and read_records(records, "sb_forward"),
                      timeout=20, what="the failing message's two attempts")
    assert {r["type"] for r in runs} == {"str"}
    # The failing invocation (twice: maxDeliveryCount 2) wrote nothing.
    client = QueueClient.from_connection_string(azurite_connection_string, container_name)
    assert list(client.peek_messages(max_messages=32)) == []


def _app(tmp_path, code: str):
    (tmp_path / "function_app.py").write_text("import azure.functions as func\napp = func.FunctionApp()\n" + code)
    (tmp_path / "host.json").write_text('{"version": "2.0"}')
    (tmp_path / "local.settings.json").write_text(json.dumps({"Values": {
        "AzureWebJobsStorage": "UseDevelopmentStorage=true", "CosmosConnection": "AccountEndpoint=x;"}}))
    return tmp_path


def test_unsupported_binding_is_refused_saying_what_to_do(tmp_path, start_host):
    app = _app(tmp_path, '''
@app.route(route="r")
@app.cosmos_db_output(arg_name="doc", database_name="d", container_name="c", connection="CosmosConnection")
def f(req: func.HttpRequest, doc: func.Out[str]) -> str:
    return "x"
''')
    with pytest.raises(HostConfigError) as caught:
        start_host(app)
    text = str(caught.value)
    assert "function 'f', binding 'doc': cosmosDB output bindings are not supported by the dev host" in text
    assert "remove the binding and call the service from the function's code with its Python SDK (azure-cosmos)" in text
    assert "shared/" not in text


def test_output_parameter_must_be_func_out(tmp_path, start_host):
    app = _app(tmp_path, '''
@app.route(route="r")
@app.blob_output(arg_name="out", path="c/x.txt", connection="AzureWebJobsStorage")
def f(req: func.HttpRequest, out: str) -> str:
    return "x"
''')
    with pytest.raises(HostConfigError, match=r"must be annotated func.Out\[...\]"):
        start_host(app)
