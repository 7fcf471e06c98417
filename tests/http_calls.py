"""Call an HTTP function of the app (HTTP streams: it takes the FastAPI Request) as the worker does, without a
server: the request built and its route parameters synced by the dev host's own code, the response run as the
ASGI app it is, its body collected message by message."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from starlette.datastructures import Headers

from local.host import http_streams


@dataclass
class Answer:
    status_code: int
    headers: Headers
    body: bytes
    messages: list[int] = field(default_factory=list)  # each body message's size, as it was sent

    def get_body(self) -> bytes:
        return self.body


def call(function: Callable, url: str, headers: Mapping[str, str] | None = None,
         route_params: Mapping[str, str] | None = None, method: str = "GET",
         sink: Callable[[bytes], None] | None = None) -> Answer:
    """sink: takes each body message instead of the answer keeping it (a big body is not held)."""
    parts = urlsplit(url)
    scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.4"}, "http_version": "1.1",
             "method": method, "scheme": parts.scheme or "http", "path": parts.path or "/",
             "raw_path": (parts.path or "/").encode(), "query_string": parts.query.encode(), "root_path": "",
             "headers": [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()],
             "client": ("127.0.0.1", 50000), "server": (parts.hostname or "localhost", parts.port or 80),
             "path_params": {}}

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    start: dict = {}
    body = bytearray()
    sizes: list[int] = []

    async def send(message: dict) -> None:
        if message["type"] == "http.response.start":
            start.update(message)
        elif message.get("body") or message.get("more_body"):
            chunk = message.get("body") or b""
            sizes.append(len(chunk))
            if sink is None:
                body.extend(chunk)
            else:
                sink(chunk)

    request = http_streams.request_for(scope, receive, dict(route_params or {}))
    response = http_streams.as_response(function(request))
    asyncio.run(response(scope, receive, send))
    return Answer(start["status"], Headers(raw=start.get("headers") or []), bytes(body), sizes)
