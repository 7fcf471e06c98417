"""Blob triggers on `job-logs` (`shared.flows.collect.on_blob`).

Only the blob's name is used: the collector streams the content itself, in bounded chunks. The trigger
binds to a BlobClient (the SDK-type binding of azurefunctions-extensions-bindings-blob) because with
`func.InputStream` the Python worker reads the whole blob into memory before the function starts, which a
multi-GiB crash dump must not cost.
"""

from __future__ import annotations

import azure.functions as func
import azurefunctions.extensions.bindings.blob as blob

from shared.adapters.services import services
from shared.flows.collect import on_blob
from shared.pure.settings import LOGS_CONTAINER, STORAGE_CONNECTION

bp = func.Blueprint()


@bp.function_name("collect_log")
@bp.blob_trigger(arg_name="client", path=f"{LOGS_CONTAINER}/{{name}}", connection=STORAGE_CONNECTION,
                 source=func.BlobSource.EVENT_GRID)
def collect_log(client: blob.BlobClient) -> None:
    on_blob(services(), client.blob_name, crash_dump_trigger=False)


@bp.function_name("collect_crash_dump")
@bp.blob_trigger(arg_name="client", path=f"{LOGS_CONTAINER}/{{jobId}}/{{nodeId}}/crashdumps/{{name}}",
                 connection=STORAGE_CONNECTION, source=func.BlobSource.EVENT_GRID)
def collect_crash_dump(client: blob.BlobClient) -> None:
    on_blob(services(), client.blob_name, crash_dump_trigger=True)
