"""Client side of the emulator's control surface and start-up line, for tests, benchmarks and the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from email.utils import formatdate
from pathlib import Path
from urllib.parse import urlsplit

from local.batch import auth


@dataclass(frozen=True)
class Endpoint:
    url: str
    account: str
    key: str

    @classmethod
    def parse(cls, line: str) -> Endpoint:
        """Read the `BATCH_URL=... BATCH_ACCOUNT=... BATCH_KEY=...` line the emulator prints."""
        fields = dict(part.split("=", 1) for part in line.split() if "=" in part)
        try:
            return cls(fields["BATCH_URL"], fields["BATCH_ACCOUNT"], fields["BATCH_KEY"])
        except KeyError as exc:
            raise ValueError(f"not a Batch emulator start-up line: missing {exc}") from None

    def client(self, **kwargs):
        from azure.batch import BatchClient
        from azure.core.credentials import AzureNamedKeyCredential

        return BatchClient(self.url, AzureNamedKeyCredential(self.account, self.key), **kwargs)

    def set_faults(self, **settings) -> dict:
        """rate, statuses, latencyMs, retryAfter, activeJobQuota; see local.batch.server.set_faults."""
        body = json.dumps(settings).encode()
        url = f"{self.url}/_emulator/faults"
        headers = {"Content-Type": "application/json", "Content-Length": str(len(body)),
                   "ocp-date": formatdate(usegmt=True)}
        parts = urlsplit(url)
        headers["Authorization"] = auth.authorization(self.account, self.key, "PUT", parts.path, parts.query, headers)
        request = urllib.request.Request(url, data=body, headers=headers, method="PUT")
        with urllib.request.urlopen(request, timeout=10) as resp:
            return json.loads(resp.read())


class EmulatorProcess:
    """`python -m local.batch` as a child process; start() waits for its start-up line."""

    def __init__(self, workspace: Path, pools: list[str], port: int = 0, extra: list[str] | None = None,
                 log_file: Path | None = None):
        self.args = [sys.executable, "-m", "local.batch", "--port", str(port), "--workspace", str(workspace)]
        for pool in pools:
            self.args += ["--pool", pool]
        self.args += extra or []
        self.log_file = log_file
        self.proc: subprocess.Popen | None = None
        self.endpoint: Endpoint | None = None

    def start(self, timeout: float = 30) -> Endpoint:
        stderr = open(self.log_file, "ab") if self.log_file else subprocess.DEVNULL  # noqa: SIM115
        root = Path(__file__).resolve().parents[2]
        env = {**os.environ, "PYTHONPATH": f"{root}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
        self.proc = subprocess.Popen(self.args, stdout=subprocess.PIPE, stderr=stderr, cwd=root, env=env, text=True)
        deadline = time.monotonic() + timeout
        assert self.proc.stdout is not None
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if line.startswith("BATCH_URL="):
                self.endpoint = Endpoint.parse(line)
                return self.endpoint
            if not line and self.proc.poll() is not None:
                break
        self.stop()
        raise RuntimeError(f"the Batch emulator did not start within {timeout:.0f}s; see {self.log_file}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
