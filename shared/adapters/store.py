"""The orchestrator's own records in Blob storage, besides the collected files.

- `job-reports/rejected/{key}.json`: a rejected request, kept with its reason (never silently dropped)
- `job-requests-private/{jobId}.json`: the accepted request as sent, so the watchdog can finish a
  submission (SAS URLs in it: only the app reads this container); `job-reports/{jobId}/request.json`:
  the same with secrets (SAS signatures, keys, tokens) redacted, for operators
- `job-reports/{jobId}/outcome.json` and the marker `job-reports/outcomes/{jobId}`: a completed job's
  outcome (Batch refuses metadata updates on completed jobs, so the marker is how a sweep knows)
- `tools/log_uploader.py` and `tools/lognames.py`: the release task's uploader, read by nodes (a read-only
  SAS, or the pool's identity)
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from azure.storage.blob import (
    BlobSasPermissions,
    BlobServiceClient,
    ContainerSasPermissions,
    generate_blob_sas,
    generate_container_sas,
)

from shared.adapters.blobs import BlobContainer
from shared.node import lognames
from shared.pure import blob_layout
from shared.pure.planning import NODE_FILES, Links
from shared.pure.redact import redact_secrets, redact_value, redacting_logger
from shared.pure.settings import (
    LOGS_CONTAINER,
    REPORTS_CONTAINER,
    REQUESTS_CONTAINER,
    TOOLS_CONTAINER,
    PoolIdentity,
)
from shared.pure.values import iso

log = redacting_logger("orchestrator.store")
# "The key's expiry must be within 7 days of the current time":
# https://learn.microsoft.com/rest/api/storageservices/get-user-delegation-key#request-body
USER_DELEGATION_LIFETIME = timedelta(days=7)
NODE_DIR = Path(__file__).resolve().parent.parent / "node"
REJECTED_PREFIX = blob_layout.REJECTED_PREFIX
OUTCOMES_PREFIX = blob_layout.OUTCOMES_PREFIX
RESENDS_PREFIX = "resends/"  # in the private requests container, beside {jobId}.json


class Store:
    """`logs` and `reports` are the two containers the collector works on; the methods below are the
    orchestrator's records in `reports` and what a job's nodes are given."""

    def __init__(self, service: BlobServiceClient, account_key: str | None = None,
                 upload_identity: PoolIdentity | None = None):
        self._service = service
        self._account_key = account_key
        self._upload_identity = upload_identity
        self.logs = BlobContainer(service.get_container_client(LOGS_CONTAINER))
        self.reports = BlobContainer(service.get_container_client(REPORTS_CONTAINER))
        self._tools = BlobContainer(service.get_container_client(TOOLS_CONTAINER))
        # Requests as sent, SAS URLs and all: only the app's identity can read this container.
        self._requests = BlobContainer(service.get_container_client(REQUESTS_CONTAINER))
        self._uploader_placed = False
        self._delegation: tuple[Any, datetime] | None = None

    def ensure_containers(self) -> None:
        for container in (self.logs, self.reports, self._tools, self._requests):
            container.create()

    @property
    def credential_lifetime(self) -> timedelta | None:
        """How long a credential signed for a job's nodes may live: a user delegation SAS (the app holds no
        key in Azure) at most 7 days; None when nothing in the job is signed or the signer is a key."""
        if self._upload_identity is not None or self._account_key:
            return None
        return USER_DELEGATION_LIFETIME

    # ----- requests -------------------------------------------------------------------------------

    def reject(self, key: str, raw: bytes, reason: str, errors: list[dict] | None, now: datetime,
               extra: dict | None = None) -> str:
        """Keep a rejected request with its reason. Keys are unique per delivery, so none overwrites another."""
        name = f"{REJECTED_PREFIX}{key}.json"
        text = redact_secrets(raw.decode("utf-8", errors="replace"))
        record = {"key": key, "rejectedAt": iso(now), "reason": redact_secrets(reason),
                  "errors": [{k: redact_secrets(str(v)) for k, v in e.items()} for e in errors or []],
                  "request": text, **(extra or {})}
        self.reports.write_json(name, record)
        log.warning("request rejected", extra={"key": key, "reason": record["reason"][:500]})
        return name

    def rejected(self, prefix: str = "") -> list[dict]:
        """Rejections, oldest first; prefix: those of one message (blob_layout.rejection_prefix)."""
        out = [self.reports.read_json(blob.name) for blob in self.reports.list(REJECTED_PREFIX + prefix)]
        return sorted((r for r in out if r is not None), key=lambda r: r.get("rejectedAt", ""))

    def save_request(self, job_id: str, raw: bytes, message_id: str) -> None:
        """The request as sent, for the watchdog to finish a submission, where only the app can read it;
        beside the report, a copy with its secrets redacted for operators."""
        request = json.loads(raw)
        self._requests.write_json(f"{job_id}.json", {"messageId": message_id, "request": request})
        redacted = redact_value(request)
        self.reports.write_json(blob_layout.request_name(job_id), {"messageId": message_id, "request": redacted})

    def load_request(self, job_id: str) -> dict | None:
        return self._requests.read_json(f"{job_id}.json")

    # Re-sends the orchestrator scheduled, where only the app can write: a message's claim to be one is
    # checked against them (shared.pure.retry.verified).
    def record_resend(self, message_id: str, record: dict) -> None:
        self._requests.write_json(f"{RESENDS_PREFIX}{lognames.name_digest(message_id)}.json", record)

    def resend_record(self, message_id: str) -> dict | None:
        return self._requests.read_json(f"{RESENDS_PREFIX}{lognames.name_digest(message_id)}.json")

    # ----- outcomes and reports -------------------------------------------------------------------

    def write_outcome(self, job_id: str, outcome: dict) -> None:
        self.reports.write_json(blob_layout.outcome_name(job_id), outcome)
        self.reports.write(f"{OUTCOMES_PREFIX}{job_id}", b"")

    def recorded_outcomes(self) -> set[str]:
        return {b.name[len(OUTCOMES_PREFIX):] for b in self.reports.list(OUTCOMES_PREFIX)}

    def forget_job(self, job_id: str) -> None:
        """The job was deleted from Batch after retention: drop the marker, keep the report."""
        self.reports.delete(f"{OUTCOMES_PREFIX}{job_id}")

    def report(self, job_id: str) -> dict | None:
        return self.reports.read_json(blob_layout.report_name(job_id))

    def outcome(self, job_id: str) -> dict | None:
        return self.reports.read_json(blob_layout.outcome_name(job_id))

    # ----- what nodes get -------------------------------------------------------------------------

    def place_uploader(self) -> None:
        """Publish the node-side files (the uploader and the naming rules it imports) to `tools`."""
        if self._uploader_placed:
            return
        for name in NODE_FILES:
            self._tools.write(name, (NODE_DIR / name).read_bytes())
        self._uploader_placed = True

    def _sign(self, now: datetime, expiry: datetime) -> dict:
        """Account-key SAS locally; a user delegation SAS in Azure, where the app holds no keys."""
        if self._account_key:
            return {"account_key": self._account_key}
        if expiry > now + USER_DELEGATION_LIFETIME:
            raise ValueError(f"a user delegation SAS lives at most {USER_DELEGATION_LIFETIME}; asked until {expiry}")
        if self._delegation is None or self._delegation[1] < expiry:
            key_expiry = min(max(expiry, now + timedelta(hours=1)), now + USER_DELEGATION_LIFETIME)
            key = self._service.get_user_delegation_key(now - timedelta(minutes=5), key_expiry)
            self._delegation = (key, key_expiry)
        return {"user_delegation_key": self._delegation[0]}

    def node_file_url(self, name: str, now: datetime, expiry: datetime) -> str:
        sas = generate_blob_sas(self._service.account_name, TOOLS_CONTAINER, name,
                                permission=BlobSasPermissions(read=True), expiry=expiry,
                                start=now - timedelta(minutes=5), **self._sign(now, expiry))
        return f"{self._tools.url}/{name}?{sas}"

    def links(self, now: datetime, expiry: datetime) -> Links:
        """What a job's nodes need: the node-side files' URLs, and where to write with which credential."""
        if self._upload_identity is not None:
            # The pool's identity reads the uploader and writes the logs: no SAS in the job at all, so a job
            # may run as long as it likes.
            files = tuple((name, f"{self._tools.url}/{name}") for name in NODE_FILES)
            return Links(node_files=files, logs_container_url=self.logs.url, upload_identity=self._upload_identity)
        files = tuple((name, self.node_file_url(name, now, expiry)) for name in NODE_FILES)
        return Links(node_files=files, logs_container_url=self.logs_upload_url(now, expiry),
                     task_output_url=self.logs_upload_url(now, expiry, overwrite=True))

    def logs_upload_url(self, now: datetime, expiry: datetime, overwrite: bool = False) -> str:
        """Create only: the uploader can add its files but not overwrite, read, list or delete anyone's.
        overwrite=True adds write, which Batch documents for an outputFiles container SAS."""
        sas = generate_container_sas(self._service.account_name, LOGS_CONTAINER,
                                     permission=ContainerSasPermissions(create=True, write=overwrite), expiry=expiry,
                                     start=now - timedelta(minutes=5), **self._sign(now, expiry))
        return f"{self.logs.url}?{sas}"
