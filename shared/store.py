"""The storage adapter: what the orchestrator keeps in Blob storage besides the collected files.

- `job-reports/rejected/{key}.json`: a rejected request, kept with its reason (never silently dropped)
- `job-reports/{jobId}/request.json`: the accepted request, so the watchdog can finish a submission
- `job-reports/{jobId}/outcome.json` and the marker `job-reports/outcomes/{jobId}`: a completed job's
  outcome (Batch refuses metadata updates on completed jobs, so the marker is how a sweep knows)
- `tools/log_uploader.py`: the release-task uploader, read by nodes through a read-only SAS
"""

from __future__ import annotations

import contextlib
import json
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import (
    BlobSasPermissions,
    BlobServiceClient,
    ContainerSasPermissions,
    ContentSettings,
    generate_blob_sas,
    generate_container_sas,
)

from shared import blob_layout as bl
from shared.planning import Links
from shared.redact import redact_sas
from shared.settings import LOGS_CONTAINER, REPORTS_CONTAINER, TOOLS_CONTAINER, UPLOADER_BLOB, PoolIdentity

log = logging.getLogger("orchestrator.store")
UPLOADER_SOURCE = Path(__file__).resolve().parent.parent / "tools" / "log_uploader.py"
REJECTED_PREFIX = "rejected/"
OUTCOMES_PREFIX = "outcomes/"
_JSON = ContentSettings(content_type="application/json")


class Store:
    def __init__(self, service: BlobServiceClient, account_key: str | None = None,
                 upload_identity: PoolIdentity | None = None):
        self.service = service
        self.account_key = account_key
        self.upload_identity = upload_identity
        self.logs = service.get_container_client(LOGS_CONTAINER)
        self.reports = service.get_container_client(REPORTS_CONTAINER)
        self.tools = service.get_container_client(TOOLS_CONTAINER)
        self._uploader_placed = False
        self._delegation: tuple[Any, datetime] | None = None

    def ensure_containers(self) -> None:
        for container in (self.logs, self.reports, self.tools):
            with contextlib.suppress(ResourceExistsError):
                container.create_container()

    # ----- requests -------------------------------------------------------------------------------

    def reject(self, key: str, raw: bytes, reason: str, errors: list[dict] | None, now: datetime,
               extra: dict | None = None) -> str:
        name = f"{REJECTED_PREFIX}{key}.json"
        text = redact_sas(raw.decode("utf-8", errors="replace"))
        record = {"key": key, "rejectedAt": now.astimezone(UTC).isoformat(), "reason": reason,
                  "errors": errors or [], "request": text, **(extra or {})}
        self.reports.upload_blob(name, json.dumps(record, indent=2), overwrite=True, content_settings=_JSON)
        log.warning("request rejected", extra={"key": key, "reason": reason[:500]})
        return name

    def rejected(self) -> list[dict]:
        out = []
        for blob in self.reports.list_blobs(name_starts_with=REJECTED_PREFIX):
            out.append(json.loads(self.reports.download_blob(blob.name).readall()))
        return sorted(out, key=lambda r: r.get("rejectedAt", ""))

    def save_request(self, job_id: str, raw: bytes, message_id: str) -> None:
        body = {"messageId": message_id, "request": json.loads(raw)}
        self.reports.upload_blob(f"{job_id}/request.json", json.dumps(body), overwrite=True, content_settings=_JSON)

    def load_request(self, job_id: str) -> dict | None:
        try:
            return json.loads(self.reports.download_blob(f"{job_id}/request.json").readall())
        except ResourceNotFoundError:
            return None

    # ----- outcomes and reports -------------------------------------------------------------------

    def write_outcome(self, job_id: str, outcome: dict) -> None:
        self.reports.upload_blob(bl.outcome_name(job_id), json.dumps(outcome, indent=2), overwrite=True,
                                 content_settings=_JSON)
        self.reports.upload_blob(f"{OUTCOMES_PREFIX}{job_id}", b"", overwrite=True)

    def recorded_outcomes(self) -> set[str]:
        return {b.name[len(OUTCOMES_PREFIX):] for b in self.reports.list_blobs(name_starts_with=OUTCOMES_PREFIX)}

    def forget_job(self, job_id: str) -> None:
        """The job was deleted from Batch after retention: drop the marker, keep the report."""
        with contextlib.suppress(ResourceNotFoundError):
            self.reports.delete_blob(f"{OUTCOMES_PREFIX}{job_id}")

    def report(self, job_id: str) -> dict | None:
        try:
            return json.loads(self.reports.download_blob(bl.report_name(job_id)).readall())
        except ResourceNotFoundError:
            return None

    def outcome(self, job_id: str) -> dict | None:
        try:
            return json.loads(self.reports.download_blob(bl.outcome_name(job_id)).readall())
        except ResourceNotFoundError:
            return None

    # ----- what nodes get -------------------------------------------------------------------------

    def place_uploader(self) -> None:
        if self._uploader_placed:
            return
        self.tools.upload_blob(UPLOADER_BLOB, UPLOADER_SOURCE.read_bytes(), overwrite=True)
        self._uploader_placed = True

    def _sign(self, now: datetime, expiry: datetime) -> dict:
        """Account-key SAS locally; a user delegation SAS in Azure, where the app holds no keys."""
        if self.account_key:
            return {"account_key": self.account_key}
        if self._delegation is None or self._delegation[1] < expiry:
            key_expiry = max(expiry, now + timedelta(hours=1))
            key = self.service.get_user_delegation_key(now - timedelta(minutes=5), key_expiry)
            self._delegation = (key, key_expiry)
        return {"user_delegation_key": self._delegation[0]}

    def uploader_url(self, now: datetime, expiry: datetime) -> str:
        sas = generate_blob_sas(self.service.account_name, TOOLS_CONTAINER, UPLOADER_BLOB,
                                permission=BlobSasPermissions(read=True), expiry=expiry,
                                start=now - timedelta(minutes=5), **self._sign(now, expiry))
        return f"{self.tools.url}/{UPLOADER_BLOB}?{sas}"

    def links(self, now: datetime, expiry: datetime) -> Links:
        """What a job's nodes need: the uploader's URL, and where to write with which credential."""
        # With the pool's identity writing, no SAS goes into the job's definition.
        logs = self.logs.url if self.upload_identity is not None else self.logs_upload_url(now, expiry)
        return Links(uploader_url=self.uploader_url(now, expiry), logs_container_url=logs,
                     upload_identity=self.upload_identity)

    def logs_upload_url(self, now: datetime, expiry: datetime) -> str:
        """Create and write only: a node can add its files but cannot read, list or delete anyone's."""
        sas = generate_container_sas(self.service.account_name, LOGS_CONTAINER,
                                     permission=ContainerSasPermissions(create=True, write=True), expiry=expiry,
                                     start=now - timedelta(minutes=5), **self._sign(now, expiry))
        return f"{self.logs.url}?{sas}"
