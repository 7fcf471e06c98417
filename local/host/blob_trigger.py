"""Blob trigger: poll a container for new and changed blobs; receipts make each blob version run once.

A receipt is a marker blob `azure-webjobs-hosts/blobreceipts/{hostId}/{functionId}/{etag}/{container}/{blob}`
(the host's layout). It counts attempts before each invocation, so a crash mid-run counts too, and after
poisonBlobThreshold failures the blob is reported on the `webjobs-blobtrigger-poison` queue and not retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from dataclasses import dataclass
from urllib.parse import quote

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import BlobClient
from azure.storage.blob.aio import ContainerClient
from azure.storage.queue import TextBase64EncodePolicy
from azure.storage.queue.aio import QueueClient

from .invoker import Invoker
from .loader import FunctionSpec
from .payloads import blob_argument, iso
from .settings import BlobOptions
from .storage import HostStorage

log = logging.getLogger("local.host.blob")

POISON_QUEUE = "webjobs-blobtrigger-poison"


@dataclass(frozen=True)
class BlobPath:
    """`container/prefix{name}.ext` from the binding: the container, the listing prefix and a name matcher."""

    container: str
    prefix: str
    pattern: re.Pattern

    @classmethod
    def parse(cls, path: str) -> BlobPath:
        container, _, rest = path.strip("/").partition("/")
        prefix = rest.split("{", 1)[0]
        regex = ""
        for literal, name in re.findall(r"([^{]*)(?:\{([^}]*)\})?", rest):
            regex += re.escape(literal)
            if name:
                regex += f"(?P<{re.sub(r'[^0-9A-Za-z_]', '_', name)}>.+?)"
        return cls(container, prefix, re.compile(f"^{regex}$"))

    def matches(self, blob_name: str) -> bool:
        return bool(self.pattern.fullmatch(blob_name))


def quoted(etag: str) -> str:
    """ETags as the host writes them, in quotes; listings (Azurite's at least) leave the quotes off."""
    return etag if etag.startswith('"') else f'"{etag}"'


class BlobListener:
    def __init__(self, spec: FunctionSpec, connection_string: str, options: BlobOptions, invoker: Invoker,
                 storage: HostStorage, host_id: str, poll_interval: float) -> None:
        self.spec = spec
        self.path = BlobPath.parse(spec.trigger["path"])
        self.connection_string = connection_string
        self.options = options
        self.invoker = invoker
        self.storage = storage
        self.receipt_root = f"blobreceipts/{host_id}/{spec.function_id}"
        self.poll_interval = poll_interval
        self.done: set[tuple[str, str]] = set()
        self.in_flight: dict[tuple[str, str], asyncio.Task] = {}
        self._slots = asyncio.Semaphore(options.max_degree_of_parallelism)
        self._stopping = asyncio.Event()
        self._poller: asyncio.Task | None = None
        self._missing_logged = False

    async def start(self) -> None:
        self.container = ContainerClient.from_connection_string(self.connection_string, self.path.container)
        self.poison = QueueClient.from_connection_string(self.connection_string, POISON_QUEUE,
                                                         message_encode_policy=TextBase64EncodePolicy())
        self._poller = asyncio.create_task(self._poll(), name=f"blob:{self.spec.name}")
        log.info("polling", extra={"function": self.spec.name, "container": self.path.container,
                                   "prefix": self.path.prefix, "interval_s": self.poll_interval})

    async def _poll(self) -> None:
        while not self._stopping.is_set():
            try:
                await self.scan()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("scan failed; retrying", extra={"function": self.spec.name,
                                                            "error": f"{type(exc).__name__}: {exc}"})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.poll_interval)

    async def scan(self) -> None:
        try:
            async for blob in self.container.list_blobs(name_starts_with=self.path.prefix or None,
                                                        include=["metadata"]):
                if self._stopping.is_set():
                    return
                key = (blob.name, blob.etag)
                if key in self.done or key in self.in_flight or not self.path.matches(blob.name):
                    continue
                task = asyncio.create_task(self._process(blob))
                self.in_flight[key] = task
                task.add_done_callback(lambda _t, k=key: self.in_flight.pop(k, None))
            self._missing_logged = False
        except ResourceNotFoundError:
            if not self._missing_logged:
                log.info("container does not exist yet; waiting for it",
                         extra={"function": self.spec.name, "container": self.path.container})
                self._missing_logged = True

    def _receipt(self, name: str, etag: str) -> str:
        return f"{self.receipt_root}/{quoted(etag)}/{self.path.container}/{name}"

    async def _process(self, blob) -> None:
        key = (blob.name, blob.etag)
        async with self._slots:
            if self._stopping.is_set():
                return
            receipt_path = self._receipt(blob.name, blob.etag)
            receipt = await self.storage.read_metadata(receipt_path) or {}
            if receipt.get("status") in ("complete", "poisoned"):
                self.done.add(key)
                return
            attempts = int(receipt.get("attempts", "0")) + 1
            await self.storage.write_marker(receipt_path, {"status": "incomplete", "attempts": str(attempts)})
            try:
                await self.invoker.invoke(self.spec, self._argument(blob),
                                          f"Reason='New blob detected: {self.path.container}/{blob.name}'",
                                          blob=f"{self.path.container}/{blob.name}", attempt=attempts)
            except Exception:
                if attempts < self.options.poison_blob_threshold:
                    return  # not marked done: the next scan retries it
                await self._poison(blob)
                await self.storage.write_marker(receipt_path, {"status": "poisoned", "attempts": str(attempts)})
            else:
                await self.storage.write_marker(receipt_path, {"status": "complete", "attempts": str(attempts)})
            self.done.add(key)

    def _argument(self, blob):
        container, name, conn = self.path.container, blob.name, self.connection_string
        etag = quoted(blob.etag)

        def download() -> bytes:
            # Sync on purpose: InputStream.read() is sync in the worker's API, and it runs in the function's thread.
            with BlobClient.from_connection_string(conn, container, name) as client:
                return client.download_blob().readall()

        settings = blob.content_settings
        properties = {
            "Length": blob.size, "ContentLength": blob.size, "ETag": etag, "BlobType": str(blob.blob_type),
            "ContentType": settings.content_type if settings else None,
            "ContentEncoding": settings.content_encoding if settings else None,
            "LastModified": iso(blob.last_modified), "Created": iso(blob.creation_time),
        }
        uri = f"{self.container.url}/{quote(name)}"
        return blob_argument(self.spec.trigger_param_type, self.spec.trigger.get("dataType"), download,
                             f"{container}/{name}", uri, properties, dict(blob.metadata or {}),
                             connection=self.spec.trigger.get("connection") or "AzureWebJobsStorage")

    async def _poison(self, blob) -> None:
        # The host's poison message: which function, and which blob version, gave up.
        message = {"Type": "BlobTrigger", "FunctionId": self.spec.function_id, "BlobType": "BlockBlob",
                   "ContainerName": self.path.container, "BlobName": blob.name, "ETag": quoted(blob.etag)}
        with contextlib.suppress(ResourceExistsError):
            await self.poison.create_queue()
        await self.poison.send_message(json.dumps(message))
        log.error("blob moved to the poison queue after repeated failures",
                  extra={"function": self.spec.name, "blob": f"{self.path.container}/{blob.name}",
                         "queue": POISON_QUEUE, "attempts": self.options.poison_blob_threshold})

    async def stop_receiving(self) -> None:
        self._stopping.set()
        if self._poller:
            self._poller.cancel()
            await asyncio.gather(self._poller, return_exceptions=True)

    async def drain(self, timeout: float) -> int:
        if self.in_flight:
            await asyncio.wait(list(self.in_flight.values()), timeout=max(timeout, 0))
        return len(self.in_flight)

    async def close(self) -> None:
        for task in list(self.in_flight.values()):
            task.cancel()
        await asyncio.gather(*self.in_flight.values(), return_exceptions=True)
        for client in (getattr(self, "container", None), getattr(self, "poison", None)):
            if client is not None:
                await client.close()
