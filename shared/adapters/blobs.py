"""The blob storage contract every flow uses: one container, named blobs, bytes and JSON.

`BlobContainer` is the only thing above the adapters that touches Blob storage. It reads in bounded
chunks (CLIENT_KWARGS: the SDK's default first GET is 32 MiB), never hands out an SDK client, and answers
in plain values (`BlobItem`, `Download`). Absent blobs are None, not exceptions.
"""

from __future__ import annotations

import contextlib
import json
import random
import time
from collections.abc import Callable, Iterator, Mapping
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
    return json.dumps(body, indent=1, sort_keys=True, ensure_ascii=False).encode()


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

    def delete(self, name: str) -> None:
        with contextlib.suppress(ResourceNotFoundError):
            self._client.delete_blob(name)

    def rewrite_json(self, name: str, build: Callable[[Any | None], Any], limit: int = MAX_JSON_BYTES) -> Any:
        """Read, build(current or None), write back with the ETag read, so concurrent writers can't leave
        a stale result: whoever writes last built on every earlier write."""
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
            try:
                if etag is None:
                    blob.upload_blob(data, overwrite=False, content_settings=settings)
                else:
                    blob.upload_blob(data, overwrite=True, etag=etag, match_condition=MatchConditions.IfNotModified,
                                     content_settings=settings)
                return body
            except (ResourceExistsError, ResourceModifiedError):
                continue
            except HttpResponseError as exc:
                if exc.status_code in (409, 412):
                    continue
                raise
        raise StillChanging(f"{name[:200]!r}: still changing after {_CONFLICT_ATTEMPTS} attempts")
