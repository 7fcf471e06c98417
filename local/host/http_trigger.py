"""HTTP trigger: an aiohttp server on 127.0.0.1 serving `/{routePrefix}/{route}` like Core Tools (no keys).

The same server takes the blob extension's Event Grid webhook, `POST /runtime/webhooks/blobs?functionName=
Host.Functions.<name>` (https://learn.microsoft.com/azure/azure-functions/functions-event-grid-blob-trigger),
answering as the extension does: `aeg-event-type: SubscriptionValidation` gets 200 and the validation code
back (https://learn.microsoft.com/azure/event-grid/end-point-validation-event-grid-events-schema);
`Notification` gets 202 once its BlobCreated events are queued; an unknown function gets 404. The `code=`
key in the query is accepted and not checked, like every key locally.
"""

from __future__ import annotations

import json
import logging
import re

import azure.functions as func
from aiohttp import web

from . import http_streams
from .blob_trigger import BLOB_CREATED, SUBJECT, BlobListener
from .errors import HostConfigError
from .invoker import Invoker
from .loader import FunctionSpec
from .payloads import http_request

log = logging.getLogger("local.host.http")

BIND = "127.0.0.1"
ALL_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
# ASP.NET route constraints that have a direct regex; the rest match one segment.
_CONSTRAINTS = {"int": r"-?\d+", "long": r"-?\d+", "alpha": r"[A-Za-z]+", "bool": r"(?i:true|false)",
                "guid": r"[0-9A-Fa-f]{8}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{12}",
                "double": r"-?\d+(?:\.\d+)?", "float": r"-?\d+(?:\.\d+)?", "decimal": r"-?\d+(?:\.\d+)?"}
WEBHOOK_PATH = "/runtime/webhooks/blobs"
_PARAM = re.compile(r"\{(\*?)([A-Za-z_][A-Za-z0-9_]*)(?::([^}?=]+))?(\?)?(?:=[^}]*)?\}")


class Route:
    """A Functions route template (`items/{id:int}/{name?}`, `files/{*rest}`) matched as the host's ASP.NET
    routing does: literal segments case-insensitively, a trailing slash ignored, constraints checked, an
    optional or catch-all last parameter allowed to be absent (a default, `{name=x}`, then applies)."""

    def __init__(self, template: str, prefix: str = "") -> None:
        self.template = template
        self.defaults: dict[str, str] = {}
        segments = [s for s in f"{prefix}/{template}".split("/") if s]
        pattern = ""
        self.literals = self.params = 0
        for i, segment in enumerate(segments):
            whole = _PARAM.fullmatch(segment)
            last = i == len(segments) - 1
            if whole:
                self.params += 1
                catch_all, name, constraint, optional = whole.groups()
                default = segment.partition("=")[2].rstrip("}") if "=" in segment else None
                if default is not None:
                    self.defaults[name] = default
                regex = ".*" if catch_all else _constraint(constraint)
                if last and (catch_all or optional or default is not None):
                    pattern += f"(?:/(?P<{name}>{regex}))?"
                else:
                    pattern += f"/(?P<{name}>{regex})"
                continue
            self.literals += 1
            parts, at = [], 0
            for match in _PARAM.finditer(segment):
                parts.append(re.escape(segment[at:match.start()]))
                parts.append(f"(?P<{match.group(2)}>{_constraint(match.group(3))})")
                self.params += 1
                at = match.end()
            parts.append(re.escape(segment[at:]))
            pattern += "/" + "".join(parts)
        self._regex = re.compile(f"^{pattern or '/'}$", re.IGNORECASE)

    def match(self, path: str) -> dict[str, str] | None:
        if len(path) > 1 and path.endswith("/"):
            path = path[:-1]
        found = self._regex.match(path)
        if found is None:
            return None
        params = dict(self.defaults)
        params.update({k: v for k, v in found.groupdict().items() if v is not None})
        return params

    @property
    def precedence(self) -> tuple[int, int]:
        # More literal segments first, then fewer parameters: `items/new` wins over `items/{id}`.
        return (-self.literals, self.params)


def _constraint(constraint: str | None) -> str:
    return _CONSTRAINTS.get((constraint or "").split("(")[0].lower(), r"[^/]+")


def _response(result: object) -> web.StreamResponse:
    if result is None:
        return web.Response(status=204)
    if isinstance(result, func.HttpResponse):
        headers = {k: v for k, v in result.headers.items() if k.lower() != "content-type"}
        content_type = result.headers.get("Content-Type") or result.mimetype or "text/plain"
        response = web.Response(status=result.status_code, body=result.get_body(), headers=headers)
        response.headers["Content-Type"] = (
            content_type if "charset" in content_type or not result.charset
            or not content_type.startswith(("text/", "application/json"))
            else f"{content_type}; charset={result.charset}")
        return response
    if isinstance(result, str):
        return web.Response(status=200, text=result)
    if isinstance(result, bytes | bytearray):
        return web.Response(status=200, body=bytes(result))
    raise TypeError(f"an HTTP function must return func.HttpResponse, str or bytes, not {type(result).__name__}")


class HttpServer:
    def __init__(self, specs: list[FunctionSpec], route_prefix: str, invoker: Invoker, port: int,
                 host_id: str, blob_webhooks: dict[str, BlobListener] | None = None, streams: bool = False) -> None:
        self.specs = specs
        self.streams = streams  # HTTP streams (http_streams.py): FastAPI requests and responses
        self.route_prefix = route_prefix
        self.invoker = invoker
        self.requested_port = port
        self.host_id = host_id
        self.port: int | None = None
        self.ready = False
        self.runner: web.AppRunner | None = None
        self.routes: list[tuple[str, list[str], str]] = []
        self.table: list[tuple[Route, frozenset[str], FunctionSpec]] = []
        self.all_specs: list[FunctionSpec] = []
        self.webhooks = blob_webhooks or {}  # function id -> listener, for functions whose blob source is EventGrid

    def _app(self) -> web.Application:
        app = web.Application(client_max_size=http_streams.body_limit())
        app.router.add_get("/", self._root)
        app.router.add_get("/admin/host/status", self._status)
        app.router.add_get("/admin/functions", self._functions)
        app.router.add_post(WEBHOOK_PATH, self._blob_webhook)
        prefix = f"/{self.route_prefix}" if self.route_prefix else ""
        for spec in self.specs:
            # No `methods` means every method, HEAD included, as in the host.
            methods = [str(m).upper() for m in (spec.trigger.get("methods") or ALL_METHODS)]
            template = spec.trigger.get("route") or spec.name
            self.table.append((Route(template, self.route_prefix), frozenset(methods), spec))
            self.routes.append((spec.name, methods, f"{prefix}/{template}"))
        self.table.sort(key=lambda entry: entry[0].precedence)
        # Everything else is a function's route; matched here rather than by aiohttp, whose paths are
        # case-sensitive and strict about a trailing slash where the host is not.
        app.router.add_route("*", "/{path:.*}", self._dispatch)
        return app

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        allowed: set[str] = set()
        for route, methods, spec in self.table:
            params = route.match(request.path)
            if params is None:
                continue
            if request.method in methods:
                return await self._invoke(spec, request, params)
            allowed |= methods
        if allowed:
            return web.Response(status=405, headers={"Allow": ", ".join(sorted(allowed))})
        return web.Response(status=404)

    async def _invoke(self, spec: FunctionSpec, request: web.Request, params: dict[str, str]) -> web.StreamResponse:
        reason = f"Reason='HTTP {request.method} {request.path}'"
        if self.streams:
            return await http_streams.serve(
                spec.name, lambda req: self.invoker.invoke(spec, req, reason, method=request.method,
                                                           path=request.path), request, params)
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return http_streams.too_large(http_streams.body_limit())
        req = http_request(request.method, str(request.url), dict(request.headers),
                           dict(request.query), params, body)
        try:
            result = await self.invoker.invoke(spec, req, reason, method=request.method, path=request.path)
            return _response(result)
        except Exception:
            # Like the host: the details are in the log, the client gets a bare 500.
            return web.Response(status=500)

    async def _root(self, _request: web.Request) -> web.Response:
        return web.Response(text="Functions dev host is running\n")

    async def _status(self, _request: web.Request) -> web.Response:
        return web.json_response({"id": self.host_id, "state": "Running" if self.ready else "Initialized",
                                  "version": "local"})

    async def _functions(self, _request: web.Request) -> web.Response:
        hooks = {h["function"]: h for h in self.blob_webhooks()}
        out = []
        for spec in self.all_specs:
            entry = {"name": spec.name, "trigger": spec.trigger_type}
            if spec.trigger_type == "blobTrigger":
                entry["path"] = spec.trigger["path"]
                entry["source"] = spec.trigger.get("source") or "LogsAndContainerScan"
            if spec.name in hooks:
                entry.update({k: v for k, v in hooks[spec.name].items() if k != "function"})
            out.append(entry)
        return web.json_response(out)

    def blob_webhooks(self) -> list[dict[str, str]]:
        return [{"function": listener.spec.name,
                 "webhook": f"http://{BIND}:{self.port}{WEBHOOK_PATH}?functionName={function_id}",
                 **listener.path.subject_filters()}
                for function_id, listener in self.webhooks.items()]

    async def _blob_webhook(self, request: web.Request) -> web.Response:
        function_id = request.query.get("functionName", "")
        listener = self.webhooks.get(function_id)
        if listener is None:
            return web.json_response({"error": f"no blob trigger with source EventGrid named {function_id!r}"},
                                     status=404)
        kind = request.headers.get("aeg-event-type", "").lower()
        try:
            body = json.loads(await request.read())
        except ValueError:
            return web.json_response({"error": "the body is not JSON"}, status=400)
        # Event Grid schema: an array; CloudEvents: one object.
        events = body if isinstance(body, list) else [body]
        if kind == "subscriptionvalidation":
            try:
                code = events[0]["data"]["validationCode"]
            except (IndexError, KeyError, TypeError):
                return web.json_response({"error": "no data.validationCode in the validation event"}, status=400)
            log.info("Event Grid validation handshake", extra={"function": listener.spec.name})
            return web.json_response({"validationResponse": code})
        if kind in ("unsubscribe", "subscriptiondeletion"):
            return web.Response(status=202)
        if kind != "notification":
            return web.json_response({"error": "aeg-event-type must be SubscriptionValidation or Notification"},
                                     status=400)
        created = []
        for event in events:
            if not isinstance(event, dict) or (event.get("eventType") or event.get("type")) != BLOB_CREATED:
                continue
            match = SUBJECT.match(str(event.get("subject", "")))
            if match is None:
                return web.json_response({"error": f"unexpected subject {event.get('subject')!r}"}, status=400)
            created.append((match[1], match[2], (event.get("data") or {}).get("eTag")))
        # 2xx only once every event is queued: otherwise Event Grid should try again (a stopping host).
        if not all(listener.accept(*blob) for blob in created):
            return web.json_response({"error": "the host is stopping"}, status=503)
        return web.Response(status=202)

    async def start(self, all_specs: list[FunctionSpec], shutdown_timeout: float) -> int:
        self.all_specs = all_specs
        # shutdown_timeout: on stop, requests in progress get this long to finish.
        self.runner = web.AppRunner(self._app(), access_log=None, handle_signals=False,
                                    shutdown_timeout=shutdown_timeout)
        await self.runner.setup()
        site = web.TCPSite(self.runner, BIND, self.requested_port)
        try:
            await site.start()
        except OSError as exc:
            await self.runner.cleanup()
            raise HostConfigError(f"cannot listen on {BIND}:{self.requested_port} ({exc.strerror}); another "
                                  "host may be running: stop it or pass --port") from None
        self.port = site._server.sockets[0].getsockname()[1]
        for name, methods, path in self.routes:
            log.info("http function", extra={"function": name, "methods": ",".join(methods),
                                             "url": f"http://{BIND}:{self.port}{path}"})
        for hook in self.blob_webhooks():
            log.info("blob trigger webhook (subscribe it to BlobCreated events)", extra=hook)
        return self.port

    async def stop(self) -> None:
        if self.runner:
            await self.runner.cleanup()
