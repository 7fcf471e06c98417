"""The stand-in as a child process (`python -m local.blobevents`), and a client for its control API."""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from local.child import ReadyProcess

from .events import subscription_body

READY_PREFIX = "BLOB_EVENTS_URL="


class BlobEventsError(Exception):
    """The control API refused a request; the message is its answer (e.g. a failed validation handshake)."""


class BlobEventsClient:
    """`/_events/...` over HTTP, for a stand-in in another process (the stack, the test fixtures)."""

    def __init__(self, url: str, timeout: float = 60.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout

    def _call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{self.url}/_events/{path}", data=data, method=method,
                                         headers={"Content-Type": "application/json"} if data else {})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                raw = response.read()
                return response.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as error:
            raw = error.read()
            try:
                message = json.loads(raw)["error"]["message"]
            except (ValueError, KeyError, TypeError):
                message = raw.decode(errors="replace")
            raise BlobEventsError(f"{method} /_events/{path}: HTTP {error.code}: {message}") from None

    def subscribe(self, name: str, endpoint_url: str, **options: Any) -> dict:
        """Create or replace; options as in events.subscription_body (subject_begins_with, subject_ends_with,
        case_sensitive, included_event_types, max_delivery_attempts, ttl_minutes)."""
        return self._call("PUT", f"subscriptions/{name}", subscription_body(endpoint_url, **options))[1]

    def unsubscribe(self, name: str) -> bool:
        return self._call("DELETE", f"subscriptions/{name}")[0] == 200

    def subscriptions(self) -> list[dict]:
        return self._call("GET", "subscriptions")[1]["value"]

    def stats(self) -> dict:
        return self._call("GET", "stats")[1]


class BlobEventsProcess(ReadyProcess):
    def __init__(self, upstream: str, port: int, log_path: Path, retry: tuple[float, float] | None = None) -> None:
        args = [sys.executable, "-m", "local.blobevents", "--upstream", upstream, "--port", str(port)]
        if retry:
            args += ["--retry-initial", str(retry[0]), "--retry-max", str(retry[1])]
        super().__init__("blob events proxy", args, READY_PREFIX, log_path)
