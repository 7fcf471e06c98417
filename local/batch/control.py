"""Client side of the emulator's control surface and start-up line, for tests, benchmarks and the CLI."""

from __future__ import annotations

import json
import ssl
import sys
import urllib.request
from dataclasses import dataclass
from email.utils import formatdate
from pathlib import Path
from urllib.parse import urlsplit

from local.batch import auth
from local.child import ReadyProcess


@dataclass(frozen=True)
class Endpoint:
    url: str
    account: str
    key: str
    # With --tls: the CA to trust, and the managed identity endpoint DefaultAzureCredential can use.
    ca: str | None = None
    identity_endpoint: str | None = None
    identity_header: str | None = None

    @classmethod
    def parse(cls, line: str) -> Endpoint:
        """Read the `BATCH_URL=... BATCH_ACCOUNT=... BATCH_KEY=... [BATCH_CA=... IDENTITY_*=...]` line the
        emulator prints."""
        fields = dict(part.split("=", 1) for part in line.split() if "=" in part)
        try:
            return cls(fields["BATCH_URL"], fields["BATCH_ACCOUNT"], fields["BATCH_KEY"], fields.get("BATCH_CA"),
                       fields.get("IDENTITY_ENDPOINT"), fields.get("IDENTITY_HEADER"))
        except KeyError as exc:
            raise ValueError(f"not a Batch emulator start-up line: missing {exc}") from None

    def client(self, **kwargs):
        from azure.batch import BatchClient
        from azure.core.credentials import AzureNamedKeyCredential

        return BatchClient(self.url, AzureNamedKeyCredential(self.account, self.key), **kwargs)

    def set_faults(self, **settings) -> dict:
        """rate, statuses, latencyMs, retryAfter, activeJobQuota, missedCompletion; see local.batch.server."""
        body = json.dumps(settings).encode()
        url = f"{self.url}/_emulator/faults"
        headers = {"Content-Type": "application/json", "Content-Length": str(len(body)),
                   "ocp-date": formatdate(usegmt=True)}
        parts = urlsplit(url)
        headers["Authorization"] = auth.authorization(self.account, self.key, "PUT", parts.path, parts.query, headers)
        request = urllib.request.Request(url, data=body, headers=headers, method="PUT")
        context = ssl.create_default_context(cafile=self.ca) if self.ca else None
        with urllib.request.urlopen(request, timeout=10, context=context) as resp:
            return json.loads(resp.read())


class EmulatorProcess:
    """`python -m local.batch` as a child process; start() waits for its start-up line."""

    def __init__(self, workspace: Path, pools: list[str], port: int = 0, extra: list[str] | None = None,
                 log_file: Path | None = None):
        args = [sys.executable, "-m", "local.batch", "--port", str(port), "--workspace", str(workspace)]
        for pool in pools:
            args += ["--pool", pool]
        self.child = ReadyProcess("Batch emulator", args + (extra or []), "BATCH_URL=",
                                  log_file or Path(workspace).parent / "batch-emulator.log")
        self.endpoint: Endpoint | None = None

    def start(self, timeout: float = 30) -> Endpoint:
        self.child.start(timeout)
        self.endpoint = Endpoint.parse(self.child.line)
        return self.endpoint

    def stop(self) -> None:
        self.child.stop()
