"""The blob storage contract every flow uses: one container, named blobs, bytes and JSON.

`BlobContainer` is the only thing above the adapters that touches Blob storage. It reads in bounded
chunks (CLIENT_KWARGS: the SDK's default first GET is 32 MiB), never hands out an SDK client, and answers
in plain values (`BlobItem`, `Download`). Absent blobs are None, not exceptions.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import random
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from azure.core import MatchConditions
from azure.core.exceptions import (
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.storage.blob import ContainerClient, ContentSettings

CHUNK_SIZE = 4 * 1024 * 1024
CLIENT_KWARGS = {"max_single_get_size": CHUNK_SIZE, "max_chunk_get_size": CHUNK_SIZE}
MAX_JSON_BYTES = 16 * 1024 * 1024
JSON_TYPE = "application/json"
_CONFLICT_ATTEMPTS = 12


class StillChanging(RuntimeError):
    """A read-modify-write lost the race more times than it is worth retrying now."""


@dataclass(frozen=True)
class BlobItem:
    name: str
    size: int
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Download:
    """An opened blob: its size and type now, its bytes as chunks on demand."""

    size: int
    content_type: str | None
    _chunks: Callable[[], Iterator[bytes]]

    def chunks(self) -> Iterator[bytes]:
        return self._chunks()


def _dumps(body: Any) -> bytes:
    # Compact: report.json is read whole by the HTTP API and the CLI, and has to stay small.
    return json.dumps(body, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode()


class BlobContainer:
    def __init__(self, client: ContainerClient):
        self._client = client

    @classmethod
    def from_connection_string(cls, connection_string: str, name: str) -> BlobContainer:
        return cls(ContainerClient.from_connection_string(connection_string, name, **CLIENT_KWARGS))

    @property
    def name(self) -> str:
        return self._client.container_name

    @property
    def url(self) -> str:
        return self._client.url

    def create(self) -> None:
        with contextlib.suppress(ResourceExistsError):
            self._client.create_container()

    def delete_container(self) -> None:
        self._client.delete_container()

    # ----- reading -----------------------------------------------------------------------------------

    def open(self, name: str) -> Download | None:
        try:
            downloader = self._client.get_blob_client(name).download_blob()
        except ResourceNotFoundError:
            return None
        settings = downloader.properties.content_settings
        return Download(downloader.size, settings.content_type if settings else None, downloader.chunks)

    def read(self, name: str, limit: int = MAX_JSON_BYTES) -> bytes | None:
        """A small blob's bytes; None if absent; ValueError if over the limit (checked before reading)."""
        try:
            downloader = self._client.get_blob_client(name).download_blob()
        except ResourceNotFoundError:
            return None
        if downloader.size > limit:
            raise ValueError(f"{downloader.size} bytes; the limit is {limit}")
        return downloader.readall()

    def read_json(self, name: str, limit: int = MAX_JSON_BYTES) -> Any | None:
        raw = self.read(name, limit)
        return None if raw is None else json.loads(raw)

    def read_range(self, name: str, offset: int, length: int) -> bytes:
        """length bytes from offset (fewer at the end of the blob): one ranged GET."""
        return self._client.get_blob_client(name).download_blob(offset=offset, length=length).readall()

    def lines(self, name: str) -> Iterator[bytes]:
        """A line-delimited blob, line by line, a chunk at a time; nothing if it is absent."""
        download = self.open(name)
        if download is None:
            return
        rest = b""
        for chunk in download.chunks():
            rest += chunk
            *complete, rest = rest.split(b"\n")
            yield from (line for line in complete if line)
        if rest:
            yield rest

    def reader(self, parts: Sequence[tuple[str, int]], window: int = CHUNK_SIZE,
               max_window: int | None = None) -> BlobReader:
        return BlobReader(self, parts, window, max_window)

    def download_to(self, name: str, sink: BinaryIO) -> int:
        return self._client.download_blob(name).readinto(sink)

    def exists(self, name: str) -> bool:
        return self._client.get_blob_client(name).exists()

    def size(self, name: str) -> int | None:
        """None if the blob is absent or its name is not one the service can address."""
        try:
            return self._client.get_blob_client(name).get_blob_properties().size
        except (HttpResponseError, ValueError, UnicodeError):
            return None

    def folders(self, prefix: str = "") -> Iterator[str]:
        """The names one level below prefix that hold blobs (`a/` for `a/b.json`), one listing entry each
        however many blobs sit under them: a delimiter listing."""
        for item in self._client.walk_blobs(name_starts_with=prefix or None, delimiter="/"):
            if item.name.endswith("/"):
                yield item.name[len(prefix):-1]

    def list(self, prefix: str | None = None, metadata: bool = False) -> Iterator[BlobItem]:
        include = ["metadata"] if metadata else None
        for item in self._client.list_blobs(name_starts_with=prefix, include=include):
            yield BlobItem(item.name, item.size, dict(item.metadata or {}))

    # ----- writing -----------------------------------------------------------------------------------

    def write(self, name: str, data: bytes | str, *, overwrite: bool = True, content_type: str | None = None,
              metadata: Mapping[str, str] | None = None) -> None:
        settings = ContentSettings(content_type=content_type) if content_type else None
        self._client.upload_blob(name, data, overwrite=overwrite, metadata=dict(metadata) if metadata else None,
                                 content_settings=settings)

    def write_json(self, name: str, body: Any, metadata: Mapping[str, str] | None = None) -> None:
        self.write(name, _dumps(body), content_type=JSON_TYPE, metadata=metadata)

    def create_json(self, name: str, body: Any, metadata: Mapping[str, str] | None = None) -> bool:
        """Write only if the name is free; False if it was taken (by an earlier or concurrent writer)."""
        try:
            self.write(name, _dumps(body), overwrite=False, content_type=JSON_TYPE, metadata=metadata)
            return True
        except ResourceExistsError:
            return False

    def write_stream(self, name: str, chunks: Iterable[bytes], content_type: str | None = None) -> int:
        """Write a blob of any size from an iterable of byte strings, CHUNK_SIZE at a time (Put Block, then
        Put Block List), never holding more than one block. Returns the bytes written."""
        blob = self._client.get_blob_client(name)
        ids: list[str] = []
        buffer = bytearray()
        total = 0

        def stage() -> None:
            block_id = base64.b64encode(f"{len(ids):08d}".encode()).decode()
            blob.stage_block(block_id, bytes(buffer))
            ids.append(block_id)
            buffer.clear()

        for chunk in chunks:
            buffer += chunk
            total += len(chunk)
            if len(buffer) >= CHUNK_SIZE:
                stage()
        if buffer or not ids:
            stage()
        blob.commit_block_list(ids, content_settings=ContentSettings(content_type=content_type) if content_type
                               else None)
        return total

    def delete(self, name: str) -> None:
        with contextlib.suppress(ResourceNotFoundError):
            self._client.delete_blob(name)

    def rewrite_json(self, name: str, build: Callable[[Any | None], Any], limit: int = MAX_JSON_BYTES,
                     metadata: Callable[[Any], Mapping[str, str]] | None = None) -> Any:
        """Read, build(current or None), write back with the ETag read, so concurrent writers can't leave
        a stale result: whoever writes last built on every earlier write. metadata(body): the blob's
        metadata to write with it, so a listing can tell what each holds."""
        blob = self._client.get_blob_client(name)
        settings = ContentSettings(content_type=JSON_TYPE)
        for attempt in range(_CONFLICT_ATTEMPTS):
            if attempt:
                # Jittered backoff: without it, a burst of writers for one blob keeps colliding.
                time.sleep(random.uniform(0, min(2.0, 0.05 * 2**attempt)))
            try:
                downloader = blob.download_blob()
            except ResourceNotFoundError:
                etag, current = None, None
            else:
                if downloader.size > limit:
                    raise ValueError(f"{name[:200]!r} is {downloader.size} bytes; the limit is {limit}")
                etag, current = downloader.properties.etag, json.loads(downloader.readall())
            body = build(current)
            data = _dumps(body)
            extra = {"metadata": dict(metadata(body))} if metadata else {}
            try:
                if etag is None:
                    blob.upload_blob(data, overwrite=False, content_settings=settings, **extra)
                else:
                    blob.upload_blob(data, overwrite=True, etag=etag, match_condition=MatchConditions.IfNotModified,
                                     content_settings=settings, **extra)
                return body
            except (ResourceExistsError, ResourceModifiedError):
                continue
            except HttpResponseError as exc:
                if exc.status_code in (409, 412):
                    continue
                raise
        raise StillChanging(f"{name[:200]!r}: still changing after {_CONFLICT_ATTEMPTS} attempts")


class BlobReader(io.RawIOBase):
    """A read-only, seekable file over one blob or the parts of one (in order), read by ranged GETs of
    `window` bytes and kept one window at a time: zipfile can read one entry of a bundle through it without
    the bundle being downloaded, and a front-to-back read downloads each byte once. With max_window, each
    read that carries on where the last window ended doubles the next one up to it: a small file costs
    about its size, a big one is read in few GETs."""

    def __init__(self, container: BlobContainer, parts: Sequence[tuple[str, int]], window: int = CHUNK_SIZE,
                 max_window: int | None = None):
        super().__init__()
        self._container = container
        self._parts = list(parts)
        self._size = sum(size for _, size in self._parts)
        self._window = window
        self._max_window = max(max_window or window, window)
        self._pos = 0
        self._cached_at = 0
        self._cached = b""
        self.requests = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def _fetch(self, offset: int) -> None:
        if self._cached and offset == self._cached_at + len(self._cached):
            self._window = min(self._window * 2, self._max_window)
        start = 0
        for name, size in self._parts:
            if offset < start + size:
                inner = offset - start
                self._cached = self._container.read_range(name, inner, min(self._window, size - inner))
                self._cached_at = offset
                self.requests += 1
                return
            start += size
        self._cached, self._cached_at = b"", offset

    def readinto(self, buffer) -> int:
        """Fill the buffer (zipfile counts a short read of a header as a truncated file)."""
        view = memoryview(buffer).cast("B")
        filled = 0
        while filled < len(view) and self._pos < self._size:
            if not self._cached_at <= self._pos < self._cached_at + len(self._cached):
                self._fetch(self._pos)
                if not self._cached:
                    break
            start = self._pos - self._cached_at
            data = self._cached[start:start + len(view) - filled]
            view[filled:filled + len(data)] = data
            filled += len(data)
            self._pos += len(data)
        return filled
