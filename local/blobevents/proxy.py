"""A reverse proxy in front of Azurite's blob endpoint that publishes `Microsoft.Storage.BlobCreated` events.

Every request is forwarded unchanged (method, raw path and query, headers, body) and both bodies are
streamed chunk by chunk with aiohttp's flow control, so a multi-GiB upload or download costs a few
buffers, never the body. Compressed bodies are passed through as they are (a blob's Content-Encoding is
its own business). Then, for each successful blob creation, the operations Blob Storage raises BlobCreated
for (https://learn.microsoft.com/azure/event-grid/event-schema-blob-storage#list-of-events-for-blob-rest-apis)
- Put Blob of a block blob, Put Block List, Copy Blob and Put Blob From URL - one event is built and handed
to the broker, after the client has its answer. Put Block, failed writes and reads raise nothing.

The stand-in's own API lives under `/_events/` (Azurite's paths start with the account name, which cannot
contain `_`):
    PUT    /_events/subscriptions/{name}   body: an Event Grid eventSubscriptions body; runs the handshake
    GET    /_events/subscriptions[/{name}]
    DELETE /_events/subscriptions/{name}
    GET    /_events/stats                  requests seen by operation, events published, per subscription
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import threading
from typing import Any

import aiohttp
from aiohttp import web
from azure.core.exceptions import AzureError
from azure.storage.blob.aio import BlobServiceClient
from multidict import CIMultiDict
from yarl import URL

from local.azurite import ACCOUNT_KEY, ACCOUNT_NAME
from local.azurite import HOST as BIND

from .delivery import Backoff, Broker, HandshakeFailed
from .events import BLOB_CREATED, SUBJECT, Sequencer, Subscription, blob_created, subscription_body

log = logging.getLogger("local.blobevents")

CHUNK = 256 * 1024
HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
              "transfer-encoding", "upgrade", "expect"}
# aiohttp's client would add these when missing; Shared Key signs Content-Type, so nothing may be added.
NO_AUTO_HEADERS = ("Content-Type", "User-Agent", "Accept", "Accept-Encoding")
# Operation -> the statuses that mean a blob was created (Copy Blob answers 202 Accepted).
CREATES = {"PutBlob": {201}, "PutBlockList": {201}, "PutBlobFromUrl": {201}, "CopyBlob": {201, 202}}


def classify(method: str, query: Any, headers: Any, path: str) -> str:
    """The Blob REST operation a request is, as far as the events and the request counts care."""
    comp = (query.get("comp") or "").lower()
    restype = (query.get("restype") or "").lower()
    depth = len([p for p in path.split("/") if p])  # 1: account, 2: container, 3+: blob
    if method in ("GET", "HEAD"):
        if comp == "list":
            return "ListBlobs" if restype == "container" else "ListContainers"
        if depth >= 3 and not comp:
            return "GetBlob" if method == "GET" else "GetBlobProperties"
    if method == "PUT" and depth >= 3 and restype != "container":
        if comp == "block":
            return "PutBlock"
        if comp == "blocklist":
            return "PutBlockList"
        if not comp:
            blob_type = headers.get("x-ms-blob-type")
            if headers.get("x-ms-copy-source"):
                return "PutBlobFromUrl" if blob_type else "CopyBlob"
            if blob_type == "BlockBlob":
                return "PutBlob"
            if blob_type:
                return f"Put{blob_type}"
    if method == "DELETE" and depth >= 3 and not comp:
        return "DeleteBlob"
    return f"{method} {'comp=' + comp if comp else ('restype=' + restype if restype else '')}".strip()


class BlobEventsProxy:
    """The stand-in in this process: `start()` runs it on its own thread, `await astart()` on the caller's loop."""

    def __init__(self, upstream: str, *, port: int = 0, backoff: Backoff | None = None) -> None:
        self.upstream = upstream.rstrip("/")
        self.requested_port = port
        self.port: int | None = None
        self.broker = Broker(backoff)
        self.requests: collections.Counter[str] = collections.Counter()
        self._sequencer = Sequencer()
        self._session: aiohttp.ClientSession | None = None
        self._lookup: BlobServiceClient | None = None
        self._runner: web.AppRunner | None = None
        self._publishing: set[asyncio.Task] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{BIND}:{self.port}"

    @property
    def blob_endpoint(self) -> str:
        return f"{self.url}/{ACCOUNT_NAME}"

    # -- lifecycle ---------------------------------------------------------------------------------------

    async def astart(self) -> BlobEventsProxy:
        self._loop = asyncio.get_running_loop()
        await self.broker.start()
        # No total timeout: a GiB moves as fast as the slower side reads; connect and idle reads are bounded.
        self._session = aiohttp.ClientSession(
            auto_decompress=False, connector=aiohttp.TCPConnector(limit=0),
            timeout=aiohttp.ClientTimeout(total=None, connect=30, sock_read=300))
        self._lookup = BlobServiceClient(f"{self.upstream}/{ACCOUNT_NAME}",
                                         credential={"account_name": ACCOUNT_NAME, "account_key": ACCOUNT_KEY})
        app = web.Application()
        app.router.add_put("/_events/subscriptions/{name}", self._put_subscription)
        app.router.add_get("/_events/subscriptions", self._list_subscriptions)
        app.router.add_get("/_events/subscriptions/{name}", self._get_subscription)
        app.router.add_delete("/_events/subscriptions/{name}", self._delete_subscription)
        app.router.add_get("/_events/stats", self._stats)
        app.router.add_route("*", "/_events/{rest:.*}", self._unknown)
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, auto_decompress=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, BIND, self.requested_port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]
        log.info("blob events proxy listening", extra={"url": self.url, "upstream": self.upstream})
        return self

    async def astop(self) -> None:
        if self._runner:
            await self._runner.cleanup()
            self._runner = None
        for task in list(self._publishing):
            task.cancel()
        await asyncio.gather(*self._publishing, return_exceptions=True)
        await self.broker.close()
        if self._lookup:
            await self._lookup.close()
        if self._session:
            await self._session.close()

    def start(self, timeout: float = 30.0) -> BlobEventsProxy:
        loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=loop.run_forever, name="blob-events", daemon=True)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.astart(), loop).result(timeout)
        return self

    def stop(self, timeout: float = 30.0) -> None:
        loop = self._loop
        if loop is None or self._thread is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(self.astop(), loop).result(timeout)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            self._thread.join(timeout)
            loop.close()
            self._loop = self._thread = None

    def __enter__(self) -> BlobEventsProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- in-process control (from any thread but the proxy's own) -----------------------------------------

    def _call(self, coro):
        assert self._loop is not None, "start the proxy first"
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(60)

    async def asubscribe(self, name: str, endpoint_url: str, **options: Any) -> dict:
        subscription = Subscription.from_json(name, subscription_body(endpoint_url, **options))
        await self.broker.subscribe(subscription)
        return subscription.as_json()

    def subscribe(self, name: str, endpoint_url: str, **options: Any) -> dict:
        """Options: subject_begins_with, subject_ends_with, case_sensitive, included_event_types,
        max_delivery_attempts, ttl_minutes. Raises HandshakeFailed if the endpoint does not validate."""
        return self._call(self.asubscribe(name, endpoint_url, **options))

    def unsubscribe(self, name: str) -> bool:
        async def run() -> bool:
            return self.broker.unsubscribe(name)
        return self._call(run())

    def stats(self) -> dict:
        async def run() -> dict:
            return self._stats_json()
        return self._call(run())

    # -- control API --------------------------------------------------------------------------------------

    async def _put_subscription(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        try:
            subscription = Subscription.from_json(name, await request.json())
            created = await self.broker.subscribe(subscription)
        except (ValueError, TypeError) as exc:
            return _error(400, "InvalidRequest", str(exc))
        except HandshakeFailed as exc:
            return _error(400, "Url validation", str(exc))
        return web.json_response(subscription.as_json(), status=201 if created else 200)

    async def _list_subscriptions(self, _request: web.Request) -> web.Response:
        return web.json_response({"value": [s.as_json(self.broker.pending(s.name))
                                            for s in self.broker.subscriptions.values()]})

    async def _get_subscription(self, request: web.Request) -> web.Response:
        subscription = self.broker.subscriptions.get(request.match_info["name"])
        if subscription is None:
            return _error(404, "ResourceNotFound", f"no subscription {request.match_info['name']!r}")
        return web.json_response(subscription.as_json(self.broker.pending(subscription.name)))

    async def _delete_subscription(self, request: web.Request) -> web.Response:
        return web.Response(status=200 if self.broker.unsubscribe(request.match_info["name"]) else 204)

    async def _stats(self, _request: web.Request) -> web.Response:
        return web.json_response(self._stats_json())

    async def _unknown(self, request: web.Request) -> web.Response:
        return _error(404, "NotFound", f"{request.method} {request.path} is not part of the blob events API")

    def _stats_json(self) -> dict:
        return {"requests": dict(self.requests), "published": self.broker.published,
                "subscriptions": {n: s.counters.as_json(self.broker.pending(n))
                                  for n, s in self.broker.subscriptions.items()}}

    # -- the proxy ---------------------------------------------------------------------------------------

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        assert self._session is not None
        operation = classify(request.method, request.query, request.headers, request.path)
        self.requests[operation] += 1
        headers = CIMultiDict((k, v) for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP)
        response: web.StreamResponse | None = None
        audience: list[Subscription] | None = None
        try:
            async with self._session.request(
                    request.method, URL(self.upstream + request.raw_path, encoded=True), headers=headers,
                    data=request.content if request.body_exists else None, allow_redirects=False,
                    skip_auto_headers=NO_AUTO_HEADERS) as upstream:
                if upstream.status in CREATES.get(operation, ()):
                    # The subscriptions that exist when the blob is created get its event: fixed before the
                    # client has its answer, so one it creates next does not receive this earlier write.
                    audience = list(self.broker.subscriptions.values())
                response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
                for key, value in upstream.headers.items():
                    if key.lower() not in HOP_BY_HOP:
                        response.headers.add(key, value)
                await response.prepare(request)
                async for chunk in upstream.content.iter_chunked(CHUNK):
                    await response.write(chunk)
                await response.write_eof()
                answer = upstream.headers.copy() if audience is not None else None
        except (aiohttp.ClientConnectionError, TimeoutError) as exc:
            if response is not None and response.prepared:
                raise  # half a body is out already: only dropping the connection tells the client
            log.warning("upstream unreachable", extra={"upstream": self.upstream, "error": type(exc).__name__})
            return web.Response(status=502, text=f"blob events proxy: Azurite at {self.upstream} unreachable\n")
        if audience is not None:
            if operation == "CopyBlob" and answer.get("x-ms-copy-status", "success") != "success":
                # BlobCreated fires when a copy completes; watching a pending copy is not implemented.
                log.warning("asynchronous copy still pending: no BlobCreated event", extra={"path": request.path})
            else:
                task = asyncio.get_running_loop().create_task(self._publish(operation, request, answer, audience))
                self._publishing.add(task)
                task.add_done_callback(self._publishing.discard)
        return response

    async def _publish(self, operation: str, request: web.Request, answer: Any,
                       audience: list[Subscription]) -> None:
        account, container, blob = _split(request.path)
        subject = {"eventType": BLOB_CREATED, "subject": SUBJECT.format(container=container, blob=blob)}
        if not any(s.matches(subject) for s in audience):
            self.broker.published += 1  # nobody listens (the host's own receipts, say): skip the lookup
            return
        etag = answer.get("ETag")
        content_type, length = None, None
        if operation == "PutBlob":
            length = int(request.headers.get("Content-Length") or 0)
            content_type = request.headers.get("x-ms-blob-content-type") or request.headers.get("Content-Type")
        if account == ACCOUNT_NAME and self._lookup is not None:
            # Put Block List and copies do not say the blob's size or type; the blob does. A different ETag
            # means a later write replaced it already; that write raises its own event.
            with contextlib.suppress(AzureError):
                props = await self._lookup.get_blob_client(container, blob).get_blob_properties()
                if props.etag == etag:
                    length = props.size
                    content_type = props.content_settings.content_type
        raw_path = request.raw_path.split("?", 1)[0]
        event = blob_created(account=account, container=container, blob=blob, url=f"{self.url}{raw_path}",
                             api=operation, etag=etag, content_type=content_type, content_length=length,
                             request_id=answer.get("x-ms-request-id"),
                             client_request_id=request.headers.get("x-ms-client-request-id"),
                             sequencer=self._sequencer.next())
        matched = self.broker.publish(event, audience)
        log.debug("BlobCreated", extra={"subject": event["subject"], "api": operation, "subscriptions": matched})


def _split(path: str) -> tuple[str, str, str]:
    # aiohttp's request.path is already percent-decoded: the blob's name as the subject spells it.
    account, container, blob = path.lstrip("/").split("/", 2)
    return account, container, blob


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)
