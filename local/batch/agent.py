"""A node's agent: the one process per emulated node that creates task directories and runs commands.

Batch runs a node agent on every compute node; this is its stand-in. Keeping the fork/exec work in one
process per node, rather than in the emulator's event loop, lets nodes start tasks in parallel and keeps
the REST API responsive while thousands of short tasks start and end.

The emulator talks to it over stdin/stdout, one JSON object per line:

    -> {"op": "run", "id": 7, "commandLine": "...", "cwd": "...", "env": {...},
        "dirs": ["<task dir>", "<wd>"], "stdout": "<file>", "stderr": "<file>",
        "uid": 999, "gid": 999, "ownTree": false}     uid/gid: run as that account (the agent runs as root)
    -> {"op": "kill", "id": 7}
    <- {"id": 7, "pid": 4242, "started": "81234"}    it started (pid and kernel start time)
    <- {"id": 7, "exit": 0}                         the process ended (negative: killed by that signal)
    <- {"id": 7, "failure": {"code": ..., ...}}     it never started

Standard library only and started with `python -I -S`, so a node boots in a few milliseconds. When its
stdin closes (the emulator stopped or died) it kills every process group it started and exits.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import shlex
import shutil
import signal
import subprocess
import sys


def failure(code: str, message: str, category: str = "usererror") -> dict:
    """Batch's failureInfo for a task."""
    return {"category": category, "code": code, "message": message}


def _give(paths, uid: int, gid: int, tree: str | None) -> None:
    """Hand the task's directories and output files (and, after resource files came in, its working tree) to
    the account it runs as, as Batch's task directories belong to the task's user."""
    for path in paths:
        os.chown(path, uid, gid, follow_symlinks=False)
    if tree:
        for dirpath, dirnames, filenames in os.walk(tree):
            for name in dirnames + filenames:
                os.chown(os.path.join(dirpath, name), uid, gid, follow_symlinks=False)


def _output(path: str):
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW
    try:
        return os.fdopen(os.open(path, flags, 0o644), "wb")
    except OSError:
        if not os.path.islink(path):
            raise
        os.unlink(path)  # a link an earlier run left: replace it, never write through it
        return os.fdopen(os.open(path, flags, 0o644), "wb")


def spawn(request: dict) -> subprocess.Popen | dict:
    """Start one command as Batch does: split like a POSIX shell, executed directly, in its own group."""
    dirs = request.get("dirs", ())
    for path in dirs:
        try:
            os.mkdir(path)  # the common case: a new directory under an existing parent
        except FileExistsError:
            if os.path.islink(path):
                # An earlier run of the task (its account owns the folder) swapped its working directory for a
                # link: the agent, as root, must not follow it anywhere.
                os.unlink(path)
                os.mkdir(path)
        except FileNotFoundError:
            os.makedirs(path, exist_ok=True)
    uid, gid = request.get("uid"), request.get("gid")
    switch = {}
    if uid is not None:
        # Drop root's supplementary groups too, or the task would keep them.
        switch = {"user": uid, "group": gid, "extra_groups": []}
    try:
        argv = shlex.split(request["commandLine"])
    except ValueError as exc:
        return failure("CommandLineParseError", f"The command line could not be parsed: {exc}")
    if not argv:
        return failure("CommandLineEmpty", "The command line is empty.")
    # O_NOFOLLOW: as root, never write through a link a task left in place of its output files.
    with _output(request["stdout"]) as out, _output(request["stderr"]) as err:
        if uid is not None:
            _give([*dirs, request["stdout"], request["stderr"]], uid, gid,
                  request["cwd"] if request.get("ownTree") else None)
        try:
            return subprocess.Popen(argv, cwd=request["cwd"], env=request["env"], stdin=subprocess.DEVNULL,
                                    stdout=out, stderr=err, start_new_session=True, close_fds=True, **switch)
        except FileNotFoundError:
            return failure("CommandProgramNotFound", f"The specified command program is not found: {argv[0]}")
        except PermissionError:
            # Searched as another account, a PATH folder it may not enter answers EACCES even when the
            # program is nowhere: name what is true.
            if "/" not in argv[0] and shutil.which(argv[0], path=request["env"].get("PATH")) is None:
                return failure("CommandProgramNotFound", f"The specified command program is not found: {argv[0]}")
            return failure("CommandProgramNotExecutable",
                            f"The specified command program is not executable: {argv[0]}")
        except OSError as exc:
            return failure("CommandStartFailed", f"The command could not be started: {exc}")


def process_start_time(pid: int) -> str | None:
    """The kernel's start time of a process (field 22 of /proc/PID/stat): with the pid, it names one
    process for good, where a pid alone may be reused once the process is gone."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def _pidfd(pid: int) -> int | None:
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):  # not Linux, or a kernel before 5.3
        return None


class Agent:
    # Without pidfds, exits are found by polling at this interval.
    POLL_SECONDS = 0.05

    def __init__(self, out=sys.stdout):
        self.out = out
        self.selector = selectors.DefaultSelector()
        self.running: dict[int, tuple[subprocess.Popen, int | None]] = {}  # request id -> (process, pidfd)

    def reply(self, message: dict) -> None:
        self.out.write(json.dumps(message, separators=(",", ":")) + "\n")

    def handle(self, request: dict) -> None:
        if request.get("op") == "kill":
            entry = self.running.get(request["id"])
            if entry:
                kill_group(entry[0].pid)
            return
        try:
            started = spawn(request)
        except OSError as exc:  # the task directory or its output files could not be created
            started = failure("CommandStartFailed", f"The task could not be set up on the node: {exc}")
        if isinstance(started, dict):
            self.reply({"id": request["id"], "failure": started})
            return
        pidfd = _pidfd(started.pid)
        self.running[request["id"]] = (started, pidfd)
        if pidfd is not None:
            self.selector.register(pidfd, selectors.EVENT_READ, request["id"])
        # Lets the emulator end this process group itself should the agent die (see process.py).
        self.reply({"id": request["id"], "pid": started.pid, "started": process_start_time(started.pid)})

    def ended(self, request_id: int) -> None:
        proc, pidfd = self.running.pop(request_id)
        if pidfd is not None:
            self.selector.unregister(pidfd)
            os.close(pidfd)
            # The exited leader is not reaped yet, so its pid (the group id) cannot have been reused:
            # kill whatever it left running in its group, as Batch ends a task's processes with the task.
            kill_group(proc.pid)
        self.reply({"id": request_id, "exit": proc.wait()})

    def _polled(self) -> list[int]:
        return [rid for rid, (proc, pidfd) in self.running.items() if pidfd is None and proc.poll() is not None]

    def serve(self, stdin_fd: int) -> None:
        self.selector.register(stdin_fd, selectors.EVENT_READ, None)
        pending = b""
        while True:
            polling = any(pidfd is None for _, pidfd in self.running.values())
            for request_id in self._polled():
                self.ended(request_id)
            for key, _ in self.selector.select(self.POLL_SECONDS if polling else None):
                if key.data is not None:
                    self.ended(key.data)
                    continue
                chunk = os.read(stdin_fd, 1 << 16)
                if not chunk:
                    return
                *lines, pending = (pending + chunk).split(b"\n")
                for line in lines:
                    if line.strip():
                        self.handle(json.loads(line))
            self.out.flush()

    def shutdown(self) -> None:
        for proc, _ in self.running.values():
            kill_group(proc.pid)
        for proc, _ in self.running.values():
            proc.wait()


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the emulator decides when its nodes stop
    agent = Agent()
    try:
        agent.serve(sys.stdin.fileno())
    finally:
        agent.shutdown()


if __name__ == "__main__":
    main()
