"""Blob trigger: find new blob versions (a container scan, or Event Grid events); receipts make each run once.

Two sources, as the binding's `source` says:
- `LogsAndContainerScan` (the default): poll, listing the container every `blob_poll_interval`.
- `EventGrid`: no polling. Event Grid (locally: local/blobevents) POSTs BlobCreated events to the host's
  blob extension webhook, `POST /runtime/webhooks/blobs?functionName=Host.Functions.<name>`
  (https://learn.microsoft.com/azure/azure-functions/functions-event-grid-blob-trigger#build-the-endpoint-url),
  which hands them to `BlobListener.accept`. On start-up the listener lists the container once, so blobs
  written while the host was down still run: the real host relies on Event Grid redelivering for up to 24 h
  instead, but locally a host is often stopped for longer, and the stand-in keeps no events across restarts.

A receipt is a marker blob `azure-webjobs-hosts/blobreceipts/{hostId}/{functionId}/{etag}/{container}/{blob}`
(the host's layout). It counts attempts before each invocation, so a crash mid-run counts too, and after
poisonBlobThreshold failures the blob is reported on the `webjobs-blobtrigger-poison` queue and not retried.

All blob functions of a host share one `BlobScheduler`: at most host.json `maxDegreeOfParallelism` invocations
at once, for all blob-triggered functions together, as the docs define it
(https://learn.microsoft.com/azure/azure-functions/functions-bindings-storage-blob#hostjson-settings).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import json
import logging
import re
import unicodedata
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from urllib.parse import quote

from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import BlobClient
from azure.storage.blob.aio import BlobPrefix, ContainerClient
from azure.storage.queue import TextBase64EncodePolicy
from azure.storage.queue.aio import QueueClient

from .invoker import Invoker
from .loader import FunctionSpec
from .payloads import blob_argument, iso
from .settings import BlobOptions
from .storage import HostStorage

log = logging.getLogger("local.host.blob")

POISON_QUEUE = "webjobs-blobtrigger-poison"
EVENT_GRID = "eventgrid"
# Event Grid's BlobCreated subject: how a subscription filters and how the webhook finds the blob.
SUBJECT_PREFIX = "/blobServices/default/containers/{container}/blobs/"
SUBJECT = re.compile(r"^/blobServices/default/containers/([^/]+)/blobs/(.+)$")
BLOB_CREATED = "Microsoft.Storage.BlobCreated"
RETRY_AFTER_ERROR_S = 1.0  # a storage error (not the function's) while processing: try that blob again after this,
RETRY_AFTER_ERROR_MAX_S = 30.0  # doubling up to this
STORAGE_ERRORS_BEFORE_POISON = 10  # about 2.5 minutes of failures in a row


def retry_delay(errors: int) -> float:
    return min(RETRY_AFTER_ERROR_S * 2 ** max(errors - 1, 0), RETRY_AFTER_ERROR_MAX_S)


@dataclass(frozen=True)
class BlobPath:
    """`container/prefix{name}.ext` from the binding: the container, the listing prefix and a name matcher."""

    container: str
    prefix: str
    suffix: str  # literal text after the last `{...}`; Event Grid's subjectEndsWith
    pattern: re.Pattern

    @classmethod
    def parse(cls, path: str) -> BlobPath:
        container, _, rest = path.strip("/").partition("/")
        prefix = rest.split("{", 1)[0]
        suffix = rest.rsplit("}", 1)[1] if "{" in rest else ""
        regex = ""
        for literal, name in re.findall(r"([^{]*)(?:\{([^}]*)\})?", rest):
            regex += re.escape(literal)
            if name:
                regex += f"(?P<{re.sub(r'[^0-9A-Za-z_]', '_', name)}>.+?)"
        # DOTALL: a blob name may hold a newline, and {name} must match it too.
        return cls(container, prefix, suffix, re.compile(f"^{regex}$", re.DOTALL))

    def matches(self, blob_name: str) -> bool:
        return bool(self.pattern.fullmatch(blob_name))

    def subject_filters(self) -> dict[str, str]:
        """Event Grid subject filters that let through every blob this path can match, and few others."""
        return {"subjectBeginsWith": SUBJECT_PREFIX.format(container=self.container) + self.prefix,
                "subjectEndsWith": self.suffix}


def receipt_name(blob_name: str) -> str:
    """The blob's name inside its receipt's path: as is (the host's layout), unless the name would break
    the receipt itself. A '.' or '..' segment is folded away by the HTTP client before signing, so the
    write is refused; a control or non-character code point makes Azurite fail every listing of the
    receipts' container. Such names get a digest instead, unique per name."""
    segments = blob_name.split("/")
    if any(s in ("", ".", "..") for s in segments) or any(unicodedata.category(c)[0] == "C" for c in blob_name):
        return "~mapped/" + hashlib.sha256(blob_name.encode("utf-8", "surrogatepass")).hexdigest()
    return blob_name


def quoted(etag: str) -> str:
    """ETags as the host writes them, in quotes; listings (Azurite's at least) leave the quotes off."""
    return etag if etag.startswith('"') else f'"{etag}"'


Job = Callable[[], Awaitable[None]]


class BlobScheduler:
    """Runs blob invocations for all blob functions of a host, at most `parallelism` at once.

    Work waits in lanes, one per (function, first path segment of the blob name) - for job-logs/{jobId}/...
    that is one lane per job - and free slots take from the lanes in turn. A burst of a thousand blobs for
    one job therefore delays another job's blob by at most one turn, instead of queueing it behind the burst.
    """

    def __init__(self, parallelism: int) -> None:
        self.parallelism = parallelism
        self.running = 0
        self._lanes: dict[Hashable, collections.deque[Job]] = {}
        self._turns: collections.deque[Hashable] = collections.deque()

    @property
    def queued(self) -> int:
        return sum(len(q) for q in self._lanes.values())

    def submit(self, lane: Hashable, job: Job) -> None:
        queue = self._lanes.get(lane)
        if queue is None:
            queue = self._lanes[lane] = collections.deque()
            self._turns.append(lane)
        queue.append(job)
        self._pump()

    def drop(self, keep: Callable[[Hashable], bool]) -> None:
        """Forget queued (not running) work of the lanes `keep` says no to."""
        for lane in [lane for lane in self._lanes if not keep(lane)]:
            del self._lanes[lane]
        self._turns = collections.deque(lane for lane in self._turns if lane in self._lanes)

    def _pump(self) -> None:
        while self.running < self.parallelism and self._turns:
            lane = self._turns.popleft()
            queue = self._lanes[lane]
            job = queue.popleft()
            if queue:
                self._turns.append(lane)
            else:
                del self._lanes[lane]
            self.running += 1
            asyncio.get_running_loop().create_task(job()).add_done_callback(self._finished)

    def _finished(self, _task: asyncio.Task) -> None:
        self.running -= 1
        self._pump()


class BlobListener:
    def __init__(self, spec: FunctionSpec, connection_string: str, options: BlobOptions, invoker: Invoker,
                 storage: HostStorage, host_id: str, poll_interval: float, scheduler: BlobScheduler) -> None:
        self.spec = spec
        self.path = BlobPath.parse(spec.trigger["path"])
        self.event_driven = str(spec.trigger.get("source") or "").lower() == EVENT_GRID
        self.connection_string = connection_string
        self.options = options
        self.invoker = invoker
        self.storage = storage
        self.scheduler = scheduler
        self.receipt_root = f"blobreceipts/{host_id}/{spec.function_id}"
        self.poll_interval = poll_interval
        # Blob versions are (name, quoted etag). done: settled in this run; pending: queued, running or
        # waiting to be retried.
        self.done: set[tuple[str, str]] = set()
        self.pending: set[tuple[str, str]] = set()
        self.running: dict[tuple[str, str], asyncio.Task] = {}
        self.caught_up = asyncio.Event()  # EventGrid source: the start-up scan has listed everything
        self._stopping = asyncio.Event()
        self._poller: asyncio.Task | None = None
        self._retries: dict[tuple[str, str], asyncio.TimerHandle] = {}
        self._missing_logged = False
        self._unlistable: set[str] = set()  # folders logged as unlistable, so each is logged once
        self._skipped = 0  # folders the current scan could not list
        self._storage_errors: dict[tuple[str, str], int] = {}

    async def start(self) -> None:
        self.container = ContainerClient.from_connection_string(self.connection_string, self.path.container)
        self.poison = QueueClient.from_connection_string(self.connection_string, POISON_QUEUE,
                                                         message_encode_policy=TextBase64EncodePolicy())
        if self.event_driven:
            self._poller = asyncio.create_task(self._catch_up(), name=f"blob-catch-up:{self.spec.name}")
            log.info("waiting for Event Grid events, after one catch-up scan; no polling: a new blob reaches this "
                     "function only if something sends its BlobCreated event (locally, the blob events proxy in "
                     "front of Azurite, local/blobevents, which `orchestrator up` starts)",
                     extra={"function": self.spec.name, "container": self.path.container,
                            "webhook": f"/runtime/webhooks/blobs?functionName={self.spec.function_id}"})
        else:
            self._poller = asyncio.create_task(self._poll(), name=f"blob:{self.spec.name}")
            log.info(f"polling the container every {self.poll_interval:g} s for new blobs",
                     extra={"function": self.spec.name, "container": self.path.container,
                            "prefix": self.path.prefix, "interval_s": self.poll_interval})

    async def _poll(self) -> None:
        while not self._stopping.is_set():
            await self._try_scan("scan failed; retrying")
            await self._wait_stopping(self.poll_interval)

    async def _catch_up(self) -> None:
        delay = self.poll_interval
        while not self._stopping.is_set():
            if await self._try_scan("catch-up scan failed; retrying"):
                self.caught_up.set()
                log.info("catch-up scan done; events only from now on", extra={"function": self.spec.name})
                return
            await self._wait_stopping(delay)
            delay = min(delay * 2, 30.0)

    async def _try_scan(self, failure: str) -> bool:
        """One scan; a failure is logged and left to the caller's next turn (storage may be restarting).
        False too when a folder could not be listed: a 500 may have been passing, so it is not done yet."""
        try:
            return await self.scan()
        except Exception as exc:
            log.warning(failure, extra={"function": self.spec.name, "error": f"{type(exc).__name__}: {exc}"})
            return False

    async def _wait_stopping(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def scan(self) -> bool:
        """List the container once; True when every folder could be listed."""
        self._skipped = 0
        try:
            async for blob in self._listing(self.path.prefix):
                if self._stopping.is_set():
                    return False
                if self.path.matches(blob.name):
                    self._enqueue((blob.name, quoted(blob.etag)), blob)
            self._missing_logged = False
        except ResourceNotFoundError:
            if not self._missing_logged:
                log.info("container does not exist yet; waiting for it",
                         extra={"function": self.spec.name, "container": self.path.container})
                self._missing_logged = True
        return self._skipped == 0

    async def _listing(self, prefix: str):
        """Every blob under prefix. Where a listing fails on the server's side (Azurite answers 500 to any
        listing that holds a name XML cannot carry; Azure would send it encoded), the folder is listed one
        level down instead, so one such blob hides only the blobs beside it, not the whole container."""
        try:
            async for blob in self.container.list_blobs(name_starts_with=prefix or None, include=["metadata"],
                                                        retry_total=0):
                yield blob
            self._unlistable.discard(prefix)
            return
        except HttpResponseError as exc:
            if isinstance(exc, ResourceNotFoundError) or (exc.status_code or 0) < 500:
                raise
        try:
            folders = [item async for item in self.container.walk_blobs(name_starts_with=prefix or None,
                                                                        include=["metadata"], delimiter="/",
                                                                        retry_total=0)]
        except HttpResponseError as exc:
            if isinstance(exc, ResourceNotFoundError) or (exc.status_code or 0) < 500:
                raise
            self._skipped += 1
            if prefix not in self._unlistable:
                self._unlistable.add(prefix)
                log.error("storage cannot list this folder (a blob in it has a name storage cannot list); its "
                          "blobs are skipped until that blob is deleted or renamed",
                          extra={"function": self.spec.name, "container": self.path.container,
                                 "folder": prefix, "error": f"{exc.status_code} {exc.reason}"})
            return
        for item in folders:
            if isinstance(item, BlobPrefix):
                async for blob in self._listing(item.name):
                    yield blob
            else:
                yield item

    def accept(self, container: str, name: str, etag: str | None) -> bool:
        """A BlobCreated event for this function (EventGrid source). False while stopping: the sender should
        try again later. A blob this function's path does not match is accepted and ignored, as the host does."""
        if self._stopping.is_set():
            return False
        if container != self.path.container or not self.path.matches(name):
            return True
        self._enqueue((name, quoted(etag) if etag else ""), None)
        return True

    def _enqueue(self, key: tuple[str, str], blob) -> None:
        if key in self.done or key in self.pending:
            return
        self.pending.add(key)
        self._submit(key, blob)

    def _submit(self, key: tuple[str, str], blob) -> None:
        lane = (self.spec.name, key[0].split("/", 1)[0])
        self.scheduler.submit(lane, lambda: self._run(key, blob))

    async def _run(self, key: tuple[str, str], blob) -> None:
        if self._stopping.is_set():
            self.pending.discard(key)
            return
        self.running[key] = asyncio.current_task()
        try:
            outcome = await self._process(key, blob)
        except asyncio.CancelledError:
            self.pending.discard(key)
            raise
        except Exception as exc:
            # Storage trouble, not the function failing: the blob has not been settled, so try it again, less
            # often each time; a blob that keeps failing is reported on the poison queue rather than retried
            # for ever.
            errors = self._storage_errors[key] = self._storage_errors.get(key, 0) + 1
            outcome = "retry-later"
            if errors >= STORAGE_ERRORS_BEFORE_POISON:
                outcome = await self._give_up(key, exc)
            else:
                log.warning("processing a blob failed; retrying", extra={
                    "function": self.spec.name, "blob": f"{self.path.container}/{key[0]}",
                    "error": f"{type(exc).__name__}: {exc}", "retry_in_s": retry_delay(errors),
                    "attempt": errors})
        finally:
            self.running.pop(key, None)
        if outcome != "retry-later":
            self._storage_errors.pop(key, None)
        if outcome == "retry" and not self._stopping.is_set():
            self._submit(key, blob)  # still pending; goes to the back of its lane
        elif outcome == "retry-later" and not self._stopping.is_set():
            delay = retry_delay(self._storage_errors.get(key, 1))
            self._retries[key] = asyncio.get_running_loop().call_later(delay, self._retry, key, blob)
        else:
            self.pending.discard(key)

    async def _give_up(self, key: tuple[str, str], exc: Exception) -> str:
        name, etag = key
        try:
            await self._poison(name, etag, reason=f"storage kept failing: {type(exc).__name__}: {exc}"[:500])
        except Exception:
            return "retry-later"  # storage is down altogether: keep trying, less often
        self.done.add(key)
        return "done"

    def _retry(self, key: tuple[str, str], blob) -> None:
        self._retries.pop(key, None)
        if self._stopping.is_set():
            self.pending.discard(key)
        else:
            self._submit(key, blob)

    def _receipt(self, name: str, etag: str) -> str:
        return f"{self.receipt_root}/{etag}/{self.path.container}/{receipt_name(name)}"

    async def _process(self, key: tuple[str, str], blob) -> str:
        """One attempt at one blob version; returns "done" or "retry"."""
        name, etag = key
        if blob is None:
            # An event names the version; the blob may have moved on (or gone) since. A newer version raised
            # its own event, so this one is settled without running.
            try:
                blob = await self.container.get_blob_client(name).get_blob_properties()
            except ResourceNotFoundError:
                self.done.add(key)
                return "done"
            current = quoted(blob.etag)
            if etag and current != etag:
                log.info("blob changed since its event; the newer version runs instead",
                         extra={"function": self.spec.name, "blob": f"{self.path.container}/{name}"})
                self.done.add(key)
                return "done"
            etag = current  # an event without an eTag stands for whatever version is there now
        version = (name, etag)
        receipt_path = self._receipt(name, etag)
        receipt = await self.storage.read_metadata(receipt_path) or {}
        if receipt.get("status") in ("complete", "poisoned"):
            self.done.update((key, version))
            return "done"
        attempts = int(receipt.get("attempts", "0")) + 1
        await self.storage.write_marker(receipt_path, {"status": "incomplete", "attempts": str(attempts)})
        try:
            await self.invoker.invoke(self.spec, self._argument(blob),
                                      f"Reason='New blob detected: {self.path.container}/{name}'",
                                      blob=f"{self.path.container}/{name}", attempt=attempts)
        except Exception:
            if attempts < self.options.poison_blob_threshold:
                return "retry"
            await self._poison(name, etag)
            await self.storage.write_marker(receipt_path, {"status": "poisoned", "attempts": str(attempts)})
        else:
            await self.storage.write_marker(receipt_path, {"status": "complete", "attempts": str(attempts)})
        self.done.update((key, version))
        return "done"

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

    async def _poison(self, name: str, etag: str, reason: str = "the function kept failing") -> None:
        # The host's poison message: which function, and which blob version, gave up.
        message = {"Type": "BlobTrigger", "FunctionId": self.spec.function_id, "BlobType": "BlockBlob",
                   "ContainerName": self.path.container, "BlobName": name, "ETag": etag}
        with contextlib.suppress(ResourceExistsError):
            await self.poison.create_queue()
        await self.poison.send_message(json.dumps(message))
        log.error("blob moved to the poison queue after repeated failures",
                  extra={"function": self.spec.name, "blob": f"{self.path.container}/{name}",
                         "queue": POISON_QUEUE, "reason": reason})

    async def stop_receiving(self) -> None:
        self._stopping.set()
        if self._poller:
            self._poller.cancel()
            await asyncio.gather(self._poller, return_exceptions=True)
        for handle in self._retries.values():
            handle.cancel()
        self._retries.clear()
        self.scheduler.drop(lambda lane: lane[0] != self.spec.name)
        self.pending.intersection_update(self.running)

    async def drain(self, timeout: float) -> int:
        if self.running:
            await asyncio.wait(list(self.running.values()), timeout=max(timeout, 0))
        return len(self.running)

    async def close(self) -> None:
        tasks = list(self.running.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for client in (getattr(self, "container", None), getattr(self, "poison", None)):
            if client is not None:
                await client.close()
