"""HTTP streams (azurefunctions-extensions-http-fastapi) under the dev host: the function gets the FastAPI
Request of the call, its body as it arrives; its response reaches the client chunk by chunk while the
function's iterator is still running; failures end the connection short rather than pass for a whole body."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import shutil
from pathlib import Path

import pytest

from local.host import Host, HostOptions
from local.host.errors import HostConfigError
from tests.host.conftest import call
from tests.waiting import wait_until

STREAMS_APP = Path(__file__).parent / "streams_app"
CHUNK = 64 * 1024


@pytest.fixture
def gates(tmp_path: Path) -> Path:
    folder = tmp_path / "gates"
    folder.mkdir()
    return folder


@pytest.fixture
def streams_host(make_app, start_host, gates: Path) -> Host:
    app_dir = make_app({"STREAM_GATE_DIR": str(gates), "FUNCTIONS_REQUEST_BODY_SIZE_LIMIT": str(8 * 1024 * 1024)},
                       source=STREAMS_APP)
    return start_host(app_dir)


def _connect(host: Host) -> http.client.HTTPConnection:
    return http.client.HTTPConnection("127.0.0.1", host.port, timeout=30)


def test_the_request_carries_route_query_headers_and_a_streamed_body(streams_host):
    body = os.urandom(3 * 1024 * 1024 + 5)
    conn = _connect(streams_host)
    conn.request("POST", "/api/Echo/42/tail?colour=red", body=iter([body[:1000], body[1000:]]),
                 headers={"X-Test": "yes", "Transfer-Encoding": "chunked"}, encode_chunked=True)
    response = conn.getresponse()
    got = json.loads(response.read())
    assert response.status == 200 and response.getheader("Content-Type") == "application/json"
    assert got == {"route": {"id": "42", "rest": "tail"}, "query": {"colour": "red"}, "header": "yes",
                   "method": "POST", "path": "/api/Echo/42/tail", "size": len(body),
                   "sha256": hashlib.sha256(body).hexdigest()}
    conn.close()
    # Over FUNCTIONS_REQUEST_BODY_SIZE_LIMIT (8 MiB here): refused before the function runs, as by the host.
    status, _, text = call(f"{streams_host.url}/api/echo/1", method="POST", body=b"x" * (8 * 1024 * 1024 + 1))
    assert status == 413 and b"FUNCTIONS_REQUEST_BODY_SIZE_LIMIT" in text


def test_the_first_chunk_arrives_before_the_function_has_made_the_rest(streams_host, gates: Path):
    conn = _connect(streams_host)
    conn.request("GET", "/api/gated/4?gate=one")
    response = conn.getresponse()
    assert response.status == 200 and response.getheader("Transfer-Encoding") == "chunked"
    assert response.read(CHUNK) == b"A" * CHUNK  # the body iterator now waits for the gate
    (gates / "one").write_text("open")
    assert response.read() == b"gate-open\n" + b"B" * CHUNK + b"C" * CHUNK + b"D" * CHUNK
    wait_until(lambda: (gates / "one.closed").exists(), 10, what="the body iterator to be closed")
    conn.close()


def test_a_client_that_leaves_mid_stream_has_the_iterator_closed(streams_host, gates: Path):
    conn = _connect(streams_host)
    conn.request("GET", "/api/gated/64?gate=two")
    response = conn.getresponse()
    assert response.read(CHUNK) == b"A" * CHUNK
    conn.sock.close()  # gone, 62 chunks early
    conn.close()
    (gates / "two").write_text("open")
    wait_until(lambda: (gates / "two.closed").exists(), 10, what="the body iterator to be closed")
    assert call(f"{streams_host.url}/api/plain")[0] == 200, "the host serves on"


def test_a_body_that_fails_half_way_ends_the_connection_short(streams_host):
    conn = _connect(streams_host)
    conn.request("GET", "/api/broken")
    response = conn.getresponse()
    assert response.status == 200 and response.getheader("Content-Length") == str(4 * CHUNK)
    with pytest.raises(http.client.IncompleteRead) as short:
        response.read()
    assert len(short.value.partial) == CHUNK
    conn.close()


def test_plain_values_are_json_and_errors_a_bare_500(streams_host):
    status, headers, body = call(f"{streams_host.url}/api/plain")
    assert (status, headers["Content-Type"], json.loads(body)) == (200, "application/json", {"answer": 42})
    assert call(f"{streams_host.url}/api/plain?boom=1")[:3:2] == (500, b"Internal Server Error")
    assert call(f"{streams_host.url}/api/empty")[:3:2] == (204, b"")


def test_an_app_with_streams_must_take_the_fastapi_request_in_every_http_function(tmp_path: Path):
    app_dir = tmp_path / "mixed"
    app_dir.mkdir()
    shutil.copy(STREAMS_APP / "host.json", app_dir / "host.json")
    (app_dir / "function_app.py").write_text(
        "import azure.functions as func\n"
        "from azurefunctions.extensions.http.fastapi import Request, Response\n"
        "app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)\n"
        "@app.route(route='new')\n"
        "def new(req: Request) -> Response:\n"
        "    return Response(b'')\n"
        "@app.route(route='old')\n"
        "def old(req: func.HttpRequest) -> func.HttpResponse:\n"
        "    return func.HttpResponse('old')\n")
    host = Host(app_dir, {"FUNCTIONS_WORKER_RUNTIME": "python"}, port=0, options=HostOptions())
    with pytest.raises(HostConfigError) as refused:
        host.start()
    host.stop()
    assert str(refused.value) == (
        "function 'old': parameter 'req' is annotated HttpRequest, but with HTTP streams "
        "(azurefunctions-extensions-http-fastapi imported) an HTTP trigger binds only Request: annotate it "
        "`Request` from azurefunctions.extensions.http.fastapi, as every HTTP function of the app must be")
