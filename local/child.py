"""A child process that prints one `PREFIX...` line on stdout once it serves: how every local part starts."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


class ReadyProcess:
    """A child that prints one `PREFIX...` line on stdout once it serves."""

    def __init__(self, name: str, args: list[str], ready_prefix: str, log_path: Path, env: dict | None = None):
        self.name, self.args, self.prefix, self.log_path = name, args, ready_prefix, log_path
        self.env = env
        self.proc: subprocess.Popen | None = None
        self.line = ""

    def start(self, timeout: float = 60) -> str:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            env = {**os.environ, **(self.env or {}), "PYTHONUNBUFFERED": "1"}
            self.proc = subprocess.Popen(self.args, cwd=REPO, stdout=subprocess.PIPE, stderr=log, env=env, text=True)
        deadline = time.monotonic() + timeout
        assert self.proc.stdout is not None
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if line.startswith(self.prefix):
                self.line = line.strip()
                return self.line[len(self.prefix):]
            if not line and self.proc.poll() is not None:
                break
        self.stop()
        tail = "\n".join(self.log_path.read_text(errors="replace").splitlines()[-15:])
        raise RuntimeError(f"{self.name} did not start within {timeout:.0f}s; its log ({self.log_path}) ends:\n{tail}")

    def stop(self, timeout: float = 20) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()
        self.proc = None
