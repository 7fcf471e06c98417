"""Run one command line as Batch does: split like a POSIX shell, executed directly, no shell.

Children are waited for through a pidfd on the event loop, so thousands of short tasks cost no thread
each (asyncio's default child watcher on 3.11 starts a thread per process).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Outcome:
    exit_code: int | None
    failure: dict | None


class Running:
    """A started process and a future that resolves to its exit code."""

    def __init__(self, proc: subprocess.Popen, exited: asyncio.Future):
        self.proc = proc
        self.exited = exited
        self.killed_because: str | None = None

    def kill(self, because: str) -> None:
        if self.exited.done():
            return
        self.killed_because = because
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)


def _watch(proc: subprocess.Popen, loop: asyncio.AbstractEventLoop) -> asyncio.Future:
    fut: asyncio.Future = loop.create_future()
    try:
        pidfd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):
        loop.run_in_executor(None, proc.wait).add_done_callback(
            lambda f: fut.done() or fut.set_result(f.result()))
        return fut

    def on_exit() -> None:
        loop.remove_reader(pidfd)
        os.close(pidfd)
        if not fut.done():
            fut.set_result(proc.wait())

    loop.add_reader(pidfd, on_exit)
    return fut


def spawn(command_line: str, cwd: Path, env: dict[str, str], stdout: Path, stderr: Path) -> subprocess.Popen | Outcome:
    """Start the command (blocking; safe in a worker thread), or return the failure Batch reports."""
    try:
        argv = shlex.split(command_line)
    except ValueError as exc:
        return Outcome(None, failure("CommandLineParseError", f"The command line could not be parsed: {exc}"))
    if not argv:
        return Outcome(None, failure("CommandLineEmpty", "The command line is empty."))
    with open(stdout, "wb") as out, open(stderr, "wb") as err:
        try:
            return subprocess.Popen(
                argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                start_new_session=True, close_fds=True,
            )
        except FileNotFoundError:
            return Outcome(None, failure("CommandProgramNotFound",
                                         f"The specified command program is not found: {argv[0]}"))
        except PermissionError:
            return Outcome(None, failure("CommandProgramNotExecutable",
                                         f"The specified command program is not executable: {argv[0]}"))
        except OSError as exc:
            return Outcome(None, failure("CommandStartFailed", f"The command could not be started: {exc}"))


def failure(code: str, message: str, category: str = "usererror") -> dict:
    return {"category": category, "code": code, "message": message}


async def wait(proc: subprocess.Popen, timeout: float | None, on_start=None) -> Outcome:
    """Wait for a spawned process on the event loop, killing it (and its group) at the time limit."""
    started = Running(proc, _watch(proc, asyncio.get_running_loop()))
    if on_start:
        on_start(started)
    try:
        code = await asyncio.wait_for(asyncio.shield(started.exited), timeout)
    except TimeoutError:
        started.kill("timeout")
        code = await started.exited
    except asyncio.CancelledError:
        started.kill("cancelled")
        await started.exited
        raise
    # Kill stragglers the command left in its process group; Batch ends a task's processes with it.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(started.proc.pid, signal.SIGKILL)
    if started.killed_because == "timeout":
        return Outcome(code, failure("MaxWallClockTimeExpiry",
                                     "The task exceeded its maximum wall clock time and was terminated."))
    if started.killed_because:
        return Outcome(code, failure("TaskEnded", f"The task was ended ({started.killed_because})."))
    if code != 0:
        return Outcome(code, failure("FailureExitCode", "The task exited with an exit code representing a failure."))
    return Outcome(0, None)
