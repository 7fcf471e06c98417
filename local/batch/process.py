"""The emulator's side of a node agent (local/batch/agent.py): start commands on a node and wait for them.

Each node has one agent process. A command's exit arrives as a line on the agent's stdout and resolves the
future of the run that started it; a time limit or a terminate sends the agent a kill.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

from local.batch.agent import failure, kill_group, process_start_time

log = logging.getLogger("local.batch")

AGENT = Path(__file__).with_name("agent.py")


def _end_orphaned_group(pid: int, started: str | None) -> None:
    """Kill the process group of a task whose agent died, if its leader is still that same process.

    The agent is gone, so nothing reaps the task; comparing the kernel start time makes sure a reused
    pid is never taken for it."""
    if started is not None and process_start_time(pid) == started:
        kill_group(pid)


@dataclass
class Outcome:
    exit_code: int | None
    failure: dict | None


class Running:
    """A command handed to a node agent, and a future that resolves to its exit code or start failure."""

    def __init__(self, agent: NodeAgent, request_id: int, exited: asyncio.Future):
        self.agent = agent
        self.request_id = request_id
        self.exited = exited
        self.killed_because: str | None = None

    def kill(self, because: str) -> None:
        if self.exited.done():
            return
        self.killed_because = because
        self.agent.send({"op": "kill", "id": self.request_id})


class NodeAgent:
    """One node's agent process. If it dies, its runs end as failed and the next run starts a new one."""

    def __init__(self, node_id: str):
        self.node_id = node_id
        self._ids = itertools.count(1)
        self._runs: dict[int, asyncio.Future] = {}
        self._pids: dict[int, tuple[int, str | None]] = {}  # started runs: request id -> (pid, start time)
        self._proc: asyncio.subprocess.Process | None = None
        self._started: asyncio.Task | None = None
        self._reader: asyncio.Task | None = None

    def _down(self) -> bool:
        """Never started, failed to start, or started and since gone."""
        started = self._started
        if started is None:
            return True
        if not started.done():
            return False
        failed = started.cancelled() or started.exception() is not None
        return failed or (self._reader is not None and self._reader.done())

    def boot(self) -> None:
        """Start the agent if it is not running, as a node does when it joins its pool, so the first task
        does not wait for it."""
        if self._down():
            self._started = asyncio.ensure_future(self._start())

    async def _ensure(self) -> None:
        self.boot()
        await asyncio.shield(self._started)

    async def _start(self) -> None:
        # -I: the agent imports nothing from the checkout; -S: no site-packages, so it starts quickly.
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable, "-I", "-S", str(AGENT), stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            limit=1 << 20)
        self._reader = asyncio.create_task(self._read(self._proc))

    async def _read(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        try:
            while line := await proc.stdout.readline():
                message = json.loads(line)
                if "pid" in message:
                    self._pids[message["id"]] = (message["pid"], message.get("started"))
                    continue
                self._pids.pop(message["id"], None)
                fut = self._runs.pop(message["id"], None)
                if fut is not None and not fut.done():
                    fut.set_result(message)
        finally:
            lost, self._runs = self._runs, {}
            orphans, self._pids = self._pids, {}
            for pid, started in orphans.values():
                _end_orphaned_group(pid, started)
            for fut in lost.values():
                if not fut.done():
                    fut.set_result({"failure": failure("NodeAgentFailed", "The node's agent stopped while the "
                                                       "task ran.", "servererror")})
            if lost:
                log.warning("node agent stopped", extra={"node": self.node_id, "runs_lost": len(lost)})

    def send(self, message: dict) -> None:
        proc = self._proc
        if proc is None or proc.stdin is None or proc.stdin.is_closing():
            return
        proc.stdin.write(json.dumps(message, separators=(",", ":")).encode() + b"\n")

    async def start_command(self, command_line: str, cwd: str, env: dict[str, str], dirs: list[str],
                            stdout: str, stderr: str, uid: int | None = None, gid: int | None = None,
                            own_tree: bool = False) -> Running:
        """Run a command on the node; with uid/gid, as that account, its directories and files handed to it
        (own_tree: the whole working directory, after resource files were downloaded into it as root)."""
        request_id = next(self._ids)
        fut = asyncio.get_running_loop().create_future()
        try:
            await self._ensure()
        except OSError as exc:  # e.g. out of processes: the task fails; the next one tries again
            fut.set_result({"failure": failure("NodeAgentFailed", f"The node's agent could not start: {exc}",
                                               "servererror")})
            return Running(self, request_id, fut)
        self._runs[request_id] = fut
        self.send({"op": "run", "id": request_id, "commandLine": command_line, "cwd": cwd, "env": env,
                   "dirs": dirs, "stdout": stdout, "stderr": stderr, "uid": uid, "gid": gid, "ownTree": own_tree})
        return Running(self, request_id, fut)

    async def close(self) -> None:
        """Stop the agent; it kills every process group it started before it exits."""
        proc = self._proc
        if self._started is not None and not self._started.done():
            self._started.cancel()
        if proc is None:
            return
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)


async def wait(started: Running, timeout: float | None) -> Outcome:
    """Wait for a run, killing it (and its process group) at the time limit."""
    try:
        if timeout is None:
            result = await asyncio.shield(started.exited)
        else:
            result = await asyncio.wait_for(asyncio.shield(started.exited), timeout)
    except TimeoutError:
        started.kill("timeout")
        result = await started.exited
    except asyncio.CancelledError:
        started.kill("cancelled")
        raise
    if "failure" in result:
        return Outcome(None, result["failure"])
    code = result["exit"]
    if started.killed_because == "timeout":
        return Outcome(code, failure("MaxWallClockTimeExpiry",
                                     "The task exceeded its maximum wall clock time and was terminated."))
    if started.killed_because:
        return Outcome(code, failure("TaskEnded", f"The task was ended ({started.killed_because})."))
    if code != 0:
        return Outcome(code, failure("FailureExitCode", "The task exited with an exit code representing a failure."))
    return Outcome(0, None)
