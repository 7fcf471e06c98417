"""Builds the adapters from app settings, once per process.

Locally: the Batch emulator's key, Azurite's connection string, the Service Bus emulator's connection
string. In Azure: DefaultAzureCredential (the app's managed identity) for all three.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

from azure.storage.blob import BlobServiceClient

from shared.adapters.batch import BatchAdapter, PoolDirectory
from shared.adapters.blobs import CLIENT_KWARGS
from shared.adapters.queue import RequestQueue
from shared.adapters.store import Store
from shared.pure.settings import Settings, load


@dataclass
class Services:
    settings: Settings
    batch: BatchAdapter
    store: Store
    queue: RequestQueue
    pools: PoolDirectory


@functools.cache
def _credential():
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential()


def _account_key(connection: str) -> str | None:
    parts = dict(p.split("=", 1) for p in connection.split(";") if "=" in p)
    return parts.get("AccountKey")


def build(settings: Settings) -> Services:
    from azure.batch import BatchClient
    from azure.core.credentials import AzureNamedKeyCredential

    if settings.batch_key:
        batch_credential = AzureNamedKeyCredential(settings.batch_account, settings.batch_key)
    else:
        batch_credential = _credential()
    # azure-core also caps retries on error statuses on its own (retry_status, default 3): set both, so
    # BATCH_MAX_RETRIES is the bound it says it is.
    retries = settings.batch_max_retries
    batch = BatchAdapter(BatchClient(settings.batch_url, batch_credential, retry_total=retries, retry_status=retries))
    if settings.storage_connection:
        service = BlobServiceClient.from_connection_string(settings.storage_connection, **CLIENT_KWARGS)
        key = _account_key(settings.storage_connection)
    else:
        url = settings.storage_blob_uri or f"https://{settings.storage_account}.blob.core.windows.net"
        service = BlobServiceClient(url, credential=_credential(), **CLIENT_KWARGS)
        key = None
    queue = RequestQueue(settings.queue, connection_string=settings.service_bus_connection,
                         namespace=settings.service_bus_namespace, credential=_credential)
    return Services(settings=settings, batch=batch, store=Store(service, account_key=key,
                                                                   upload_identity=settings.pool_identity),
                    queue=queue, pools=PoolDirectory(batch))


@functools.cache
def services() -> Services:
    return build(load(os.environ))
