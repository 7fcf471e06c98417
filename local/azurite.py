"""Start and stop Azurite (Blob + Queue) as a subprocess on 127.0.0.1.

With `events=True` the blob endpoint clients get is the blob events proxy (local/blobevents), a second
child process in front of Azurite's blob port that publishes Event Grid BlobCreated events; the queue
endpoint stays Azurite's own.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from local.child import free_port

if TYPE_CHECKING:  # imported where used: the proxy's aiohttp stack is only for events=True
    from local.blobevents.control import BlobEventsClient, BlobEventsProcess

log = logging.getLogger(__name__)

# The well-known development account every Azurite install accepts; not a secret.
ACCOUNT_NAME = "devstoreaccount1"
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
HOST = "127.0.0.1"
REPO_ROOT = Path(__file__).resolve().parent.parent


def azurite_binary() -> str:
    local = REPO_ROOT / "node_modules" / ".bin" / "azurite"
    if local.exists():
        return str(local)
    found = shutil.which("azurite")
    if not found:
        raise FileNotFoundError("azurite not found: run `make install` (npm ci) first")
    return found


@dataclass
class Azurite:
    blob_port: int = field(default_factory=free_port)
    queue_port: int = field(default_factory=free_port)
    table_port: int = field(default_factory=free_port)
    location: str | None = None  # None: in-memory persistence
    # HTTPS with this certificate and key (PEM files); with oauth, bearer tokens are accepted too, as Azure
    # Storage accepts Entra ID tokens (Azurite checks issuer, audience and lifetime, not the signature).
    cert: str | None = None
    key: str | None = None
    oauth: bool = False
    # Front the blob endpoint with the blob events proxy. HTTP only: the proxy does not terminate TLS.
    events: bool = False
    events_port: int = field(default_factory=free_port)
    events_log: str | None = None  # None: in Azurite's temporary folder, gone after stop()
    events_retry: tuple[float, float] | None = None  # (first, longest) redelivery wait in seconds
    _proc: subprocess.Popen | None = None
    _tmp: tempfile.TemporaryDirectory | None = None
    _events_proc: BlobEventsProcess | None = None

    def __post_init__(self) -> None:
        if self.events and (self.cert or self.oauth):
            raise ValueError("Azurite(events=True) is HTTP only: the blob events proxy does not serve HTTPS, so "
                             "it cannot front an Azurite started with cert/key/oauth; drop one of the two")

    @property
    def scheme(self) -> str:
        return "https" if self.cert else "http"

    @property
    def azurite_blob_endpoint(self) -> str:
        """Azurite's own blob endpoint, bypassing the events proxy (no events for writes made here)."""
        return f"{self.scheme}://{HOST}:{self.blob_port}/{ACCOUNT_NAME}"

    @property
    def blob_endpoint(self) -> str:
        if self.events:
            return f"{self.events_url}/{ACCOUNT_NAME}"
        return self.azurite_blob_endpoint

    @property
    def events_url(self) -> str:
        if not self.events:
            raise RuntimeError("this Azurite was started without events=True")
        return f"http://{HOST}:{self.events_port}"

    @property
    def blob_events(self) -> BlobEventsClient:
        """The proxy's control API: subscriptions and request/delivery counts."""
        from local.blobevents.control import BlobEventsClient

        return BlobEventsClient(self.events_url)

    @property
    def events_pid(self) -> int | None:
        return self._events_proc.proc.pid if self._events_proc and self._events_proc.proc else None

    @property
    def queue_endpoint(self) -> str:
        return f"{self.scheme}://{HOST}:{self.queue_port}/{ACCOUNT_NAME}"

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol={self.scheme};AccountName={ACCOUNT_NAME};AccountKey={ACCOUNT_KEY};"
            f"BlobEndpoint={self.blob_endpoint};QueueEndpoint={self.queue_endpoint};"
        )

    def start(self, timeout: float = 30.0) -> Azurite:
        if self._proc is not None:
            return self
        # Azurite writes its config/debug files in the working dir, even in memory mode.
        self._tmp = tempfile.TemporaryDirectory(prefix="azurite-")
        args = [
            azurite_binary(),
            "--blobHost", HOST, "--blobPort", str(self.blob_port),
            "--queueHost", HOST, "--queuePort", str(self.queue_port),
            "--tableHost", HOST, "--tablePort", str(self.table_port),
            "--skipApiVersionCheck", "--loose", "--silent",
        ]
        args += ["--location", self.location] if self.location else ["--inMemoryPersistence"]
        if self.cert:
            args += ["--cert", self.cert, "--key", self.key or ""]
        if self.oauth:
            if not self.cert:
                raise ValueError("Azurite accepts OAuth tokens over HTTPS only: give cert and key too")
            args += ["--oauth", "basic"]
        log.info("azurite.start", extra={"blob_port": self.blob_port, "queue_port": self.queue_port})
        self._proc = subprocess.Popen(
            args,
            cwd=self._tmp.name,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
            env={**os.environ, "NODE_OPTIONS": os.environ.get("NODE_OPTIONS", "")},
        )
        try:
            self._wait_ready(timeout)
            if self.events:
                from local.blobevents.control import BlobEventsProcess

                log_path = Path(self.events_log) if self.events_log else Path(self._tmp.name) / "blobevents.log"
                self._events_proc = BlobEventsProcess(f"http://{HOST}:{self.blob_port}", self.events_port, log_path,
                                                      self.events_retry)
                self._events_proc.start(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        pending = {self.blob_port, self.queue_port}
        while pending:
            if self._proc.poll() is not None:
                err = self._proc.stderr.read().decode(errors="replace")[-2000:] if self._proc.stderr else ""
                raise RuntimeError(f"azurite exited with {self._proc.returncode}: {err}")
            for port in list(pending):
                try:
                    with socket.create_connection((HOST, port), timeout=0.5):
                        pending.discard(port)
                except OSError:
                    pass
            if pending and time.monotonic() > deadline:
                raise TimeoutError(f"azurite not listening on {sorted(pending)} after {timeout}s")
            if pending:
                time.sleep(0.1)

    def stop(self, timeout: float = 10.0) -> None:
        events, self._events_proc = self._events_proc, None
        if events is not None:
            events.stop(timeout)
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout)
        if proc is not None and proc.stderr:
            proc.stderr.close()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> Azurite:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
