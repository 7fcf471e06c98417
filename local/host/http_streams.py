"""HTTP streams: an app that imports azurefunctions-extensions-http-fastapi is served as the Python worker serves it.

In Azure the worker then runs an ASGI server of its own and the host proxies each request to it; the function
gets the FastAPI (Starlette) `Request` of that request, with the host's route parameters synced into
`path_params`, and whatever it returns is sent back by FastAPI, a `StreamingResponse` chunk by chunk. Once
the extension is imported, every HTTP function of the app works this way (the worker's HttpV2Registry; the
docs: https://learn.microsoft.com/azure/azure-functions/functions-reference-python#http-streams). Here the
dev host skips the proxy hop: it builds the ASGI scope from its own aiohttp request and runs the returned
response as the ASGI app, writing each body message to the client as it comes, so neither side holds a
whole body.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import sys
from typing import Any

from aiohttp import web
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from .errors import HostConfigError
from .loader import FunctionSpec

log = logging.getLogger("local.host.http")

EXTENSION_BASE = "azurefunctions.extensions.base"
# The host's own cap on a request body, the same setting as in Azure (bytes; 100 MB by default):
# https://learn.microsoft.com/azure/azure-functions/functions-app-settings#functions_request_body_size_limit
BODY_LIMIT_SETTING = "FUNCTIONS_REQUEST_BODY_SIZE_LIMIT"
DEFAULT_BODY_LIMIT = 104_857_600


def body_limit() -> int:
    raw = os.environ.get(BODY_LIMIT_SETTING, "")
    return int(raw) if raw.isdigit() else DEFAULT_BODY_LIMIT


def too_large(limit: int) -> web.Response:
    response = web.Response(status=413, text=f"request body over {limit} bytes ({BODY_LIMIT_SETTING})\n")
    response.force_close()
    return response


async def _refuse_rest(request: web.Request, limit: int) -> web.Response:
    """413 once part of a body was read: sent, then the connection closed, rather than the server reading
    and dropping the rest of the body for its lingering time (10 s) first."""
    response = too_large(limit)
    await response.prepare(request)
    await response.write_eof()
    request.protocol.force_close()
    return response


def extension_loaded() -> bool:
    """A web extension (the FastAPI one) is imported in this process: the worker's HttpV2FeatureChecker."""
    if os.environ.get("PYTHON_ENABLE_INIT_INDEXING", "").strip().lower() in ("false", "0"):
        return False  # the worker indexes at init only then, and only then looks for the extension
    base = sys.modules.get(EXTENSION_BASE)  # the blob SDK-type extension loads it too; it defines no web app
    return bool(base is not None and base.HttpV2FeatureChecker.http_v2_enabled())


def app_streams(specs: list[FunctionSpec], loaded_before_import: bool) -> bool:
    """Whether this app is served with HTTP streams: it imported the extension, or (another app in the same
    process having imported it first, as in tests, where a worker process would have had only this app)
    one of its HTTP functions takes the extension's request type."""
    if not extension_loaded():
        return False
    if not loaded_before_import:
        return True
    request_type = _base().RequestTrackerMeta
    return any(request_type.check_type(s.trigger_param_type) for s in specs if s.trigger_type == "httpTrigger")


def _base() -> Any:
    return sys.modules[EXTENSION_BASE]


def check(specs: list[FunctionSpec]) -> None:
    """The worker's indexing rule in streams mode: an HTTP trigger's parameter must be the extension's
    request type, and a return annotation one of its response types (or str, dict, ...); func.HttpRequest
    and func.HttpResponse no longer bind, and the app would not start in Azure."""
    base = _base()
    for spec in specs:
        if spec.trigger_type != "httpTrigger":
            continue
        name, wanted = spec.trigger["name"], base.RequestTrackerMeta.get_request_type()
        annotation = spec.trigger_param_type
        # The worker checks only what is annotated; a bare `req` gets the FastAPI Request all the same.
        if annotation is not inspect.Parameter.empty and not base.RequestTrackerMeta.check_type(annotation):
            raise HostConfigError(
                f"function {spec.name!r}: parameter {name!r} is annotated {_named(annotation)}, but with HTTP "
                f"streams (azurefunctions-extensions-http-fastapi imported) an HTTP trigger binds only "
                f"{_named(wanted)}: annotate it `Request` from azurefunctions.extensions.http.fastapi, "
                "as every HTTP function of the app must be")
        returned = spec.return_type
        if returned is not None and not base.ResponseTrackerMeta.check_type(returned):
            raise HostConfigError(
                f"function {spec.name!r}: return annotation {_named(returned)} is not a response type of "
                "HTTP streams: return a Response (StreamingResponse, JSONResponse, ...) from "
                "azurefunctions.extensions.http.fastapi")


def _named(annotation: Any) -> str:
    return getattr(annotation, "__qualname__", None) or repr(annotation)


def _scope(request: web.Request) -> dict[str, Any]:
    peer = request.transport.get_extra_info("peername") if request.transport else None
    sock = request.transport.get_extra_info("sockname") if request.transport else None
    return {
        "type": "http",
        # 2.4: a write to a closed connection raises OSError, which Starlette takes as the client leaving
        # (no task of its own listening for the disconnect).
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": f"{request.version.major}.{request.version.minor}",
        "method": request.method,
        "scheme": request.scheme,
        "path": request.path,
        "raw_path": request.raw_path.split("?", 1)[0].encode("latin-1", "replace"),
        "query_string": request.rel_url.raw_query_string.encode("utf-8"),  # as sent, still %-encoded
        "root_path": "",
        "headers": [(k.lower(), v) for k, v in request.raw_headers],
        "client": tuple(peer[:2]) if peer else None,
        "server": tuple(sock[:2]) if sock else None,
        "path_params": {},
    }


class BodyTooLarge(Exception):
    pass


class _Exchange:
    """One request's ASGI receive and send over aiohttp: the body read as the function asks for it, the
    response written as the app sends it."""

    def __init__(self, request: web.Request, limit: int) -> None:
        self.request = request
        self.limit = limit
        self.read = 0
        self.body_done = False
        self.finished = asyncio.Event()
        self.response: web.StreamResponse | None = None

    async def receive(self) -> dict[str, Any]:
        if not self.body_done:
            chunk = await self.request.content.readany()
            self.read += len(chunk)
            if self.read > self.limit:
                raise BodyTooLarge(f"request body over {self.limit} bytes ({BODY_LIMIT_SETTING})")
            if chunk:
                return {"type": "http.request", "body": chunk, "more_body": True}
            self.body_done = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await self.finished.wait()  # after the body, receive blocks until the exchange is over
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            response = web.StreamResponse(status=message["status"])
            for key, value in message.get("headers") or []:
                response.headers.add(key.decode("latin-1"), value.decode("latin-1"))
            self.response = response
            # The status line and headers go out now, as uvicorn sends them: a body that then fails reaches the
            # client as a cut connection after them, as in Azure, not as a clean 500.
            await response.prepare(self.request)
            return
        if message["type"] != "http.response.body" or self.response is None:
            return
        body = message.get("body") or b""
        if body and self.request.method != "HEAD":
            await self.response.write(body)
        if not message.get("more_body"):
            await self.response.write_eof()


def request_for(scope: dict[str, Any], receive: Any, route_params: dict[str, str]) -> Any:
    """The extension's request type for one request, its path_params the host's route parameters."""
    base = _base()
    request = base.RequestTrackerMeta.get_request_type()(scope, receive)
    base.RequestTrackerMeta.get_synchronizer().sync_route_params(request, route_params)
    return request


def as_response(result: Any) -> Any:
    """What FastAPI sends for a function's return value: a Response as it is; anything else as JSON."""
    from fastapi.encoders import jsonable_encoder
    from starlette.responses import JSONResponse, Response

    if isinstance(result, Response):
        return result
    return JSONResponse(jsonable_encoder(result))


async def serve(function: str, invoke: Any, request: web.Request, route_params: dict[str, str]) -> web.StreamResponse:
    """invoke(argument) -> the function's return value; run it for one request and stream its response."""
    from fastapi.exception_handlers import http_exception_handler

    length = request.content_length
    limit = body_limit()
    if length is not None and length > limit:
        return too_large(limit)
    exchange = _Exchange(request, limit)
    scope = _scope(request)
    where = {"function": function, "path": request.path}
    try:
        req = request_for(scope, exchange.receive, route_params)
        try:
            result = await invoke(req)
        except BodyTooLarge:
            return await _refuse_rest(request, limit)
        except HTTPException as exc:
            # The worker hands the exception back to its FastAPI route, whose handler answers it.
            result = await http_exception_handler(req, exc)
        except Exception:
            # Like the worker's ASGI server: the details are in the function's log, the client gets a bare 500.
            return web.Response(status=500, text="Internal Server Error")
        if result is None:
            # The worker finds no response for the invocation, and the request fails.
            log.error("the function returned None: an HTTP function must return a response", extra=where)
            return web.Response(status=500, text="Internal Server Error")
        try:
            await as_response(result)(scope, exchange.receive, exchange.send)
        except ClientDisconnect:
            log.info("client went away during the response", extra=where)
            return exchange.response or web.Response(status=499)
        except Exception:
            if exchange.response is None or not exchange.response.prepared:
                log.exception("sending the response failed", extra=where)
                return web.Response(status=500, text="Internal Server Error")
            # The status is out: cut the connection, so the client sees a short body, never a whole one.
            log.exception("the response failed after it started; connection closed", extra=where)
            if request.transport is not None:
                request.transport.abort()
            return exchange.response
        return exchange.response or web.Response(status=500, text="Internal Server Error")
    finally:
        exchange.finished.set()
