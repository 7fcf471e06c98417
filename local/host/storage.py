"""The host's own bookkeeping in `azure-webjobs-hosts`, laid out as the Functions host lays it out."""

from __future__ import annotations

import contextlib
import json
import re
import socket

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.storage.blob.aio import BlobServiceClient

HOSTS_CONTAINER = "azure-webjobs-hosts"
HOST_ID_SETTING = "AzureFunctionsWebHost__hostid"


def default_host_id(settings: dict[str, str]) -> str:
    """Like the host: an explicit host id setting, else the site or machine name, lowercased, at most 32 chars."""
    explicit = settings.get(HOST_ID_SETTING)
    if explicit:
        return explicit
    base = settings.get("WEBSITE_SITE_NAME") or socket.gethostname()
    cleaned = re.sub(r"[^a-z0-9-]", "", base.lower()).strip("-") or "localhost"
    return cleaned[:32].rstrip("-")


class HostStorage:
    """Small JSON and marker blobs under azure-webjobs-hosts (timer status, blob receipts)."""

    def __init__(self, connection_string: str) -> None:
        self.service = BlobServiceClient.from_connection_string(connection_string)
        self.container = self.service.get_container_client(HOSTS_CONTAINER)

    async def ensure(self) -> None:
        with contextlib.suppress(ResourceExistsError):
            await self.container.create_container()

    async def read_json(self, path: str) -> dict | None:
        try:
            downloader = await self.container.download_blob(path)
            return json.loads(await downloader.readall())
        except ResourceNotFoundError:
            return None
        except ValueError:
            return None  # a corrupt status is treated like none, as the host does: it is rewritten

    async def write_json(self, path: str, data: dict) -> None:
        await self.container.upload_blob(path, json.dumps(data).encode(), overwrite=True)

    async def read_metadata(self, path: str) -> dict | None:
        try:
            props = await self.container.get_blob_client(path).get_blob_properties()
        except ResourceNotFoundError:
            return None
        return dict(props.metadata or {})

    async def write_marker(self, path: str, metadata: dict[str, str]) -> None:
        await self.container.upload_blob(path, b"", metadata=metadata, overwrite=True)

    async def close(self) -> None:
        await self.service.close()
