"""Blob triggers on `job-logs` (`shared.flows.collect`): one per node (its manifest, written last), one
per crash dump, and one that records any name outside the layout.

Only the blob's name is used: the collector streams the content itself, in bounded chunks. The triggers
bind to a BlobClient (the SDK-type binding of azurefunctions-extensions-bindings-blob) because with
`func.InputStream` the Python worker reads the whole blob into memory before the function starts.
"""

from __future__ import annotations

from datetime import UTC, datetime

import azure.functions as func
import azurefunctions.extensions.bindings.blob as blob

from shared.adapters.services import services
from shared.flows.collect import on_crash_dump, on_manifest, on_stray
from shared.pure.settings import LOGS_CONTAINER, STORAGE_CONNECTION

bp = func.Blueprint()


@bp.function_name("collect_node")
@bp.blob_trigger(arg_name="client", path=f"{LOGS_CONTAINER}/{{jobId}}/{{nodeId}}/manifest.json",
                 connection=STORAGE_CONNECTION, source=func.BlobSource.EVENT_GRID)
def collect_node(client: blob.BlobClient) -> None:
    store = services().store
    on_manifest(store.logs, store.reports, client.blob_name, datetime.now(UTC))


@bp.function_name("collect_crash_dump")
@bp.blob_trigger(arg_name="client", path=f"{LOGS_CONTAINER}/{{jobId}}/{{nodeId}}/crashdumps/{{name}}",
                 connection=STORAGE_CONNECTION, source=func.BlobSource.EVENT_GRID)
def collect_crash_dump(client: blob.BlobClient) -> None:
    store = services().store
    on_crash_dump(store.logs, store.reports, client.blob_name, datetime.now(UTC))


@bp.function_name("collect_stray")
@bp.blob_trigger(arg_name="client", path=f"{LOGS_CONTAINER}/{{name}}", connection=STORAGE_CONNECTION,
                 source=func.BlobSource.EVENT_GRID)
def collect_stray(client: blob.BlobClient) -> None:
    store = services().store
    on_stray(store.logs, store.reports, client.blob_name)
