"""A test app with HTTP streams (azurefunctions-extensions-http-fastapi): every HTTP function takes the FastAPI
Request and returns a FastAPI response, as the worker requires once the extension is imported."""

import hashlib
import os
import time
from pathlib import Path

import azure.functions as func
from azurefunctions.extensions.http.fastapi import JSONResponse, Request, Response, StreamingResponse
from fastapi import HTTPException

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)
CHUNK = 64 * 1024


@app.route(route="echo/{id:int}/{rest?}", methods=["GET", "POST"])
async def echo(req: Request) -> JSONResponse:
    digest, size = hashlib.sha256(), 0
    async for chunk in req.stream():  # the body as it arrives, never whole
        digest.update(chunk)
        size += len(chunk)
    return JSONResponse({"route": dict(req.path_params), "query": dict(req.query_params),
                         "header": req.headers.get("x-test"), "method": req.method, "path": req.url.path,
                         "size": size, "sha256": digest.hexdigest()})


@app.route(route="gated/{count:int}", methods=["GET"])
def gated(req: Request) -> StreamingResponse:
    """count chunks of CHUNK bytes; after the first, waits (up to 20 s) for the gate file the test makes only
    once it has read that first chunk: a buffering host would never let it."""
    gate = Path(os.environ["STREAM_GATE_DIR"]) / req.query_params["gate"]
    done = gate.with_suffix(".closed")

    def body():
        try:
            for i in range(int(req.path_params["count"])):
                if i == 1:
                    deadline = time.monotonic() + 20
                    while not gate.exists() and time.monotonic() < deadline:
                        time.sleep(0.01)
                    yield (b"gate-open\n" if gate.exists() else b"gate-timeout\n")
                yield bytes([65 + i % 26]) * CHUNK
        finally:
            done.write_text("closed")  # the host closes the iterator whatever the client did

    return StreamingResponse(body(), media_type="application/octet-stream")


@app.route(route="endless", methods=["GET"])
def endless(req: Request) -> StreamingResponse:
    """Chunks until the client leaves; how many were made is written when the host closes the iterator."""
    count = Path(os.environ["STREAM_GATE_DIR"]) / f"{req.query_params['name']}.count"

    def body():
        made = 0
        try:
            while True:
                made += 1
                yield b"e" * CHUNK
        finally:
            count.write_text(str(made))

    return StreamingResponse(body(), media_type="application/octet-stream")


@app.route(route="broken", methods=["GET"])
def broken(req: Request) -> StreamingResponse:
    def body():
        yield b"x" * CHUNK
        raise RuntimeError("the storage read failed half way")

    return StreamingResponse(body(), media_type="application/octet-stream",
                             headers={"Content-Length": str(4 * CHUNK)})


@app.route(route="plain", methods=["GET"])
def plain(req: Request) -> dict:
    if req.query_params.get("boom"):
        raise ValueError("boom")
    return {"answer": 42}


@app.route(route="bare/{name}", methods=["GET"])
def bare(req):
    """No annotation: the worker binds the FastAPI Request all the same."""
    if req.path_params["name"] == "missing":
        raise HTTPException(status_code=404, detail="no such thing")
    if req.path_params["name"] == "nothing":
        return None
    return {"name": req.path_params["name"], "query": req.url.query}


@app.route(route="empty", methods=["GET"])
def empty(req: Request) -> Response:
    return Response(status_code=204)
