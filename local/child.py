"""A child process that prints one `PREFIX...` line on stdout once it serves: how every local part starts."""

from __future__ import annotations

import os
import selectors
import signal
import socket
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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
        # select() so a child that hangs without printing still meets the deadline.
        with selectors.DefaultSelector() as selector:
            selector.register(self.proc.stdout, selectors.EVENT_READ)
            while (left := deadline - time.monotonic()) > 0:
                if not selector.select(left):
                    break
                line = self.proc.stdout.readline()
                if line.startswith(self.prefix):
                    self.line = line.strip()
                    return self.line[len(self.prefix):]
                if not line and self.proc.poll() is not None:
                    break
        self.stop()
        raise RuntimeError(f"{self.name} did not start within {timeout:.0f}s; its log ({self.log_path}) "
                           f"ends:\n{self.log_tail(15)}")

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 20, kill: bool = False) -> None:
        """SIGTERM and wait (kill=True: SIGKILL, as a crash would)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()
        self.proc = None
