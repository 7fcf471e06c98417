"""The emulator's HTTP application: Shared Key on every request, api-version checks, Batch error bodies,
opt-in fault injection, and a small control surface under /_emulator for tests and benchmarks."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import uuid
from pathlib import Path

from aiohttp import web

from local.batch import auth
from local.batch.account import Account
from local.batch.api import ACCOUNT, routes
from local.batch.api_files import file_routes
from local.batch.api_jobs import job_routes
from local.batch.api_pools import pool_routes
from local.batch.config import EmulatorConfig, Faults
from local.batch.entra import TOKEN_PATH, TOKEN_SECONDS, Issuer
from local.batch.errors import BatchError
from local.batch.tls import ensure_certificate, server_context
from local.batch.versions import SUPPORTED_API_VERSIONS, old_wire

log = logging.getLogger("local.batch")
CONFIG = web.AppKey("config", EmulatorConfig)
RNG = web.AppKey("rng", random.Random)
ISSUER = web.AppKey("issuer", Issuer)
CONTROL_PREFIX = "/_emulator"
FAULT_CODES = {503: "ServerBusy", 429: "TooManyRequests", 500: "InternalError"}


def _error(account: Account, err: BatchError, headers: dict | None = None) -> web.Response:
    return web.Response(status=err.status, body=json.dumps(err.body(account.base_url)).encode(),
                        content_type="application/json", headers=headers)


@web.middleware
async def request_ids(request: web.Request, handler):
    response = await handler(request)
    response.headers["request-id"] = str(uuid.uuid4())
    client_id = request.headers.get("client-request-id")
    if client_id:
        response.headers["client-request-id"] = client_id
    return response


@web.middleware
async def faults(request: web.Request, handler):
    if request.path.startswith(CONTROL_PREFIX):
        return await handler(request)
    settings: Faults = request.app[CONFIG].faults
    if settings.latency_ms:
        await asyncio.sleep(settings.latency_ms / 1000)
    if settings.rate and request.app[RNG].random() < settings.rate:
        status = request.app[RNG].choice(settings.statuses)
        err = BatchError(status, FAULT_CODES.get(status, "InternalError"), "Injected fault (emulator fault settings).")
        headers = {"Retry-After": str(settings.retry_after_s)} if status in (429, 503) else None
        return _error(request.app[ACCOUNT], err, headers)
    return await handler(request)


@web.middleware
async def shared_key(request: web.Request, handler):
    if request.path in (f"{CONTROL_PREFIX}/health", TOKEN_PATH):
        return await handler(request)
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        # Batch answers a bad Entra ID token with 401 and the reason in AuthenticationErrorDetail.
        reason = request.app[ISSUER].verify(header[len("Bearer "):].strip())
        if reason:
            log.warning("bearer token refused", extra={"path": request.path, "reason": reason})
            err = BatchError(401, "AuthenticationFailed", "Server failed to authenticate the request. Make sure "
                             "the value of Authorization header is formed correctly.", AuthenticationErrorDetail=reason)
            return _error(request.app[ACCOUNT], err, {"WWW-Authenticate": 'Bearer error="invalid_token"'})
        return await handler(request)
    config: EmulatorConfig = request.app[CONFIG]
    reason = auth.verify(config.account_name, config.account_key, request.method, request.rel_url.raw_path,
                         request.rel_url.raw_query_string, request.headers)
    if reason:
        log.warning("authentication failed", extra={"method": request.method, "path": request.path,
                                                    "reason": reason})
        err = BatchError(403, "AuthenticationFailed", "Server failed to authenticate the request. Make sure the "
                         "value of Authorization header is formed correctly including the signature.",
                         AuthenticationErrorDetail=reason)
        return _error(request.app[ACCOUNT], err)
    return await handler(request)


async def issue_token(request: web.Request) -> web.Response:
    """The managed identity endpoint (entra.py). `lifetime` (seconds, may be negative) is the emulator's own, so
    tests can have expired tokens."""
    issuer = request.app[ISSUER]
    if request.headers.get("X-IDENTITY-HEADER") != issuer.header_secret:
        return web.json_response({"statusCode": 401, "message": "X-IDENTITY-HEADER is missing or wrong."},
                                 status=401)
    resource = request.query.get("resource")
    if not resource:
        return web.json_response({"statusCode": 400, "message": "resource is required."}, status=400)
    try:
        lifetime = int(request.query.get("lifetime", TOKEN_SECONDS))
    except ValueError:
        return web.json_response({"statusCode": 400, "message": "lifetime must be whole seconds."}, status=400)
    return web.json_response(issuer.issue(resource, lifetime))


@web.middleware
async def batch_errors(request: web.Request, handler):
    if not request.path.startswith(CONTROL_PREFIX):
        version = request.query.get("api-version")
        if not version:
            return _error(request.app[ACCOUNT], BatchError(400, "MissingRequiredQueryParameter",
                          "A query parameter that's mandatory for this request is not specified.",
                          QueryParameterName="api-version"))
        if version not in SUPPORTED_API_VERSIONS:
            return _error(request.app[ACCOUNT], BatchError(400, "InvalidQueryParameterValue",
                          f"The api-version {version!r} is not supported by this emulator.",
                          QueryParameterName="api-version", QueryParameterValue=version))
    try:
        return await handler(request)
    except BatchError as err:
        return _error(request.app[ACCOUNT], err)
    except web.HTTPNotFound:
        return _error(request.app[ACCOUNT], BatchError(404, "ResourceNotFound",
                                                       f"No resource at {request.path}."))
    except web.HTTPMethodNotAllowed:
        return _error(request.app[ACCOUNT], BatchError(405, "MethodNotAllowed",
                                                       f"{request.method} is not supported on {request.path}."))


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok", "account": request.app[CONFIG].account_name})


async def set_faults(request: web.Request) -> web.Response:
    """PUT {rate, statuses, latencyMs, retryAfter, activeJobQuota, missedCompletion}: change fault settings
    at run time."""
    try:
        body = await request.json()
        config: EmulatorConfig = request.app[CONFIG]
        faults_cfg = config.faults
        faults_cfg.rate = float(body.get("rate", faults_cfg.rate))
        faults_cfg.statuses = tuple(int(s) for s in body.get("statuses", faults_cfg.statuses))
        faults_cfg.latency_ms = float(body.get("latencyMs", faults_cfg.latency_ms))
        faults_cfg.retry_after_s = int(body.get("retryAfter", faults_cfg.retry_after_s))
        config.active_job_quota = int(body.get("activeJobQuota", config.active_job_quota))
        config.missed_completion = bool(body.get("missedCompletion", config.missed_completion))
    except (ValueError, TypeError, AttributeError) as exc:
        return web.json_response({"error": f"bad fault settings: {exc}"}, status=400)
    if not 0 <= faults_cfg.rate <= 1:
        return web.json_response({"error": "rate must be between 0 and 1"}, status=400)
    return web.json_response({"rate": faults_cfg.rate, "statuses": list(faults_cfg.statuses),
                              "latencyMs": faults_cfg.latency_ms, "activeJobQuota": config.active_job_quota,
                              "missedCompletion": config.missed_completion})


def build_app(config: EmulatorConfig, base_url: str) -> web.Application:
    app = web.Application(middlewares=[request_ids, batch_errors, old_wire, shared_key, faults], client_max_size=64 * 2**20)
    app[CONFIG] = config
    app[RNG] = random.Random(config.faults.seed)
    app[ISSUER] = Issuer(f"{base_url}{TOKEN_PATH}/", header_secret=config.identity_header)
    app[ACCOUNT] = Account(config, base_url)
    app.router.add_get(f"{CONTROL_PREFIX}/health", health)
    app.router.add_put(f"{CONTROL_PREFIX}/faults", set_faults)
    app.router.add_get(TOKEN_PATH, issue_token)
    app.add_routes(routes)
    app.add_routes(file_routes)
    app.add_routes(job_routes)
    app.add_routes(pool_routes)

    async def lifecycle(app: web.Application):
        await app[ACCOUNT].start()
        yield
        await app[ACCOUNT].close()

    app.cleanup_ctx.append(lifecycle)
    return app


async def serve(config: EmulatorConfig, ready=None) -> None:
    """Run until cancelled. `ready(url, app)` is called once the socket is listening."""
    runner = None
    try:
        # Bind first so that port 0 resolves to a real port before the base URL is fixed.
        import socket

        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((config.host, config.port))
        port = sock.getsockname()[1]
        context = None
        if config.tls:
            _, cert, key = ensure_certificate(Path(config.workspace) / "tls")
            context = server_context(cert, key)
        base_url = f"{'https' if context else 'http'}://{config.host}:{port}"
        app = build_app(config, base_url)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        await web.SockSite(runner, sock, ssl_context=context).start()
        if ready:
            ready(base_url, app)
        await asyncio.Event().wait()
    finally:
        if runner is not None:
            await runner.cleanup()
