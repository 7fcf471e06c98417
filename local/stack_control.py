"""The local stack as `orchestrator up` and `reset` handle it: where its state lives, one `up` per folder,
ports checked before anything starts, and output that may vanish under it."""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import sys
from pathlib import Path

from local.stack import ENDPOINTS_FILE


def data_dir() -> Path:
    """Where the local stack keeps its state and endpoints (ORCHESTRATOR_DATA_DIR, else .data/)."""
    return Path(os.environ.get("ORCHESTRATOR_DATA_DIR") or ENDPOINTS_FILE.parent)


def endpoints_file() -> Path:
    return data_dir() / ENDPOINTS_FILE.name


def detach_output() -> None:
    """The reader of our output went away (`| tee` ended by the same Ctrl-C): send the rest to /dev/null,
    so printing cannot stop the shutdown and the interpreter's last flush does not fail either."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            os.dup2(devnull, stream.fileno())
    os.close(devnull)


PORT_FLAGS = {"dev host": "--http-port", "Batch emulator": "--batch-port", "Service Bus emulator": "--servicebus-port"}


def port_problem(port: int, flag: str) -> str | None:
    """Whether a fixed port can be listened on, checked before anything starts (0: any free port)."""
    if port == 0:
        return None
    with socket.socket() as probe:
        # As the servers bind: a port left in TIME_WAIT by an earlier run is free to them.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as exc:
            return (f"port {port} ({flag}) is in use on 127.0.0.1 ({exc.strerror}): stop the program using it, or "
                    f"pass {flag} with another port (0 picks a free one)")
    return None


def start_failure_text(exc: BaseException) -> str:
    """A part that did not start, its message naming this command's flags (the parts' own `--port`)."""
    text = str(exc)
    for name, flag in PORT_FLAGS.items():
        if text.startswith(name):
            text = text.replace("pass --port", f"pass {flag}")
    if isinstance(exc, FileNotFoundError):  # a part is not installed: no port to blame
        return text
    flags = ", ".join(PORT_FLAGS.values())
    return f"{text}\nIf a port is in use, choose others with {flags} (0 picks a free one); see README, Troubleshooting."


class StackLock:
    """One `orchestrator up` per data folder: an flock held for the stack's life. The kernel drops it when
    the process ends, however it ends, so a crashed `up` never blocks the next one."""

    def __init__(self, folder: Path):
        self.path = folder / "up.lock"
        self._fh = None

    def acquire(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(self.path, "a+")  # noqa: SIM115 - held open for the stack's life
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.close()
            return False
        self._fh = fh
        self.note(f"pid {os.getpid()}, starting")
        return True

    def note(self, text: str) -> None:
        if self._fh is not None:
            self._fh.seek(0)
            self._fh.truncate()
            self._fh.write(text)
            self._fh.flush()

    def holder(self) -> str:
        try:
            return self.path.read_text().strip() or "pid unknown"
        except OSError:
            return "pid unknown"

    def release(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
