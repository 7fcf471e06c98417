"""Blob triggers on `job-logs`: index each uploaded log, crash dump and manifest into `job-reports`.

collect_log watches every name in the container (so names outside the layout are recorded, not missed)
and leaves crash dumps to collect_crash_dump. Only the blob's name is used: the collector streams the
content itself, in bounded chunks. The trigger binds to a BlobClient (the SDK-type binding of
azurefunctions-extensions-bindings-blob) because with `func.InputStream` the Python worker reads the
whole blob into memory before the function starts, which a multi-GiB crash dump must not cost.
"""

from __future__ import annotations

import azure.functions as func
import azurefunctions.extensions.bindings.blob as blob

from shared import blob_layout as bl
from shared.collector import collect_blob
from shared.services import services
from shared.settings import LOGS_CONTAINER, STORAGE_CONNECTION

bp = func.Blueprint()


def _collect(name: str) -> dict:
    s = services()
    return collect_blob(s.store.logs, s.store.reports, name, node_statuses=s.batch.node_statuses)


@bp.function_name("collect_log")
@bp.blob_trigger(arg_name="client", path=f"{LOGS_CONTAINER}/{{name}}", connection=STORAGE_CONNECTION,
                 source=func.BlobSource.EVENT_GRID)
def collect_log(client: blob.BlobClient) -> None:
    name = client.blob_name
    parsed = bl.parse_log_blob(name)
    if isinstance(parsed, bl.LogBlob) and parsed.kind == bl.CRASH_DUMP:
        return
    _collect(name)


@bp.function_name("collect_crash_dump")
@bp.blob_trigger(arg_name="client", path=f"{LOGS_CONTAINER}/{{jobId}}/{{nodeId}}/crashdumps/{{name}}",
                 connection=STORAGE_CONNECTION, source=func.BlobSource.EVENT_GRID)
def collect_crash_dump(client: blob.BlobClient) -> None:
    _collect(client.blob_name)
