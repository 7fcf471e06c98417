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


def test_a_client_that_leaves_mid_stream_stops_the_iterator(streams_host, gates: Path):
    conn = _connect(streams_host)
    conn.request("GET", "/api/endless?name=left")
    response = conn.getresponse()
    assert response.read(CHUNK) == b"e" * CHUNK
    conn.sock.close()  # gone, with the iterator able to go on for ever
    conn.close()
    made = wait_until(lambda: (gates / "left.count").exists() and int((gates / "left.count").read_text()), 10,
                      what="the body iterator to be closed")
    # The one read, what loopback's socket buffers (a few MiB at most) took, and the write that failed: an
    # iterator drained regardless would never stop.
    assert made <= 64, f"{made} chunks made for a client that left after one"
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
    assert call(f"{streams_host.url}/api/bare/nothing")[:3:2] == (500, b"Internal Server Error")


def test_an_unannotated_request_the_query_as_sent_and_fastapi_errors(streams_host):
    status, _, body = call(f"{streams_host.url}/api/bare/x?p=%E2%82%AC&q=%2541")
    assert (status, json.loads(body)) == (200, {"name": "x", "query": "p=%E2%82%AC&q=%2541"})
    status, headers, body = call(f"{streams_host.url}/api/bare/missing")
    assert (status, headers["Content-Type"], json.loads(body)) == (404, "application/json",
                                                                   {"detail": "no such thing"})


def test_a_chunked_body_over_the_limit_is_413(streams_host):
    conn = _connect(streams_host)
    piece = b"x" * (1024 * 1024)
    conn.request("POST", "/api/echo/1", body=iter([piece] * 9), headers={"Transfer-Encoding": "chunked"},
                 encode_chunked=True)
    response = conn.getresponse()
    assert (response.status, response.read()) == (
        413, f"request body over {8 * 1024 * 1024} bytes (FUNCTIONS_REQUEST_BODY_SIZE_LIMIT)\n".encode())
    conn.close()


def _mixed_app(tmp_path: Path, old_function: str) -> Path:
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
        "@app.route(route='old')\n" + old_function)
    return app_dir


@pytest.mark.parametrize("old_function, message", [
    ("def old(req: func.HttpRequest) -> func.HttpResponse:\n    return func.HttpResponse('old')\n",
     "function 'old': parameter 'req' is annotated HttpRequest, but with HTTP streams "
     "(azurefunctions-extensions-http-fastapi imported) an HTTP trigger binds only Request: annotate it "
     "`Request` from azurefunctions.extensions.http.fastapi, as every HTTP function of the app must be"),
    ("def old(req: Request) -> func.HttpResponse:\n    return func.HttpResponse('old')\n",
     "function 'old': return annotation HttpResponse is not a response type of HTTP streams: return a "
     "Response (StreamingResponse, JSONResponse, ...) from azurefunctions.extensions.http.fastapi"),
])
def test_an_app_with_streams_must_use_its_types_in_every_http_function(tmp_path: Path, old_function, message):
    host = Host(_mixed_app(tmp_path, old_function), {"FUNCTIONS_WORKER_RUNTIME": "python"}, port=0,
                options=HostOptions())
    with pytest.raises(HostConfigError) as refused:
        host.start()
    host.stop()
    assert str(refused.value) == message
