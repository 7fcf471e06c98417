"""`orchestrator up` as a user runs it in a terminal, `orchestrator up 2>&1 | tee up.log`, then Ctrl-C: the
terminal sends SIGINT to the whole foreground group, so tee is gone when `up` says it is stopping. Every
child must stop all the same, and a second `up` meanwhile says one is running."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.waiting import wait_until

READY = "Ctrl-C stops everything"


def descendants(pid: int) -> set[int]:
    """Every process below pid, from /proc (Azurite runs in its own session, but is still our child)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parents[int(entry.name)] = int(fields[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_ctrl_c_with_the_output_pipe_gone_stops_every_child_and_exits_0(tmp_path):
    env = {**os.environ, "ORCHESTRATOR_DATA_DIR": str(tmp_path / "data"), "COLUMNS": "200"}
    up = subprocess.Popen([sys.executable, "-m", "local.cli", "up", "--http-port", "0", "--batch-port", "0",
                           "--servicebus-port", "0", "--pool", "up-pool:1:1"], env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        seen = []
        for line in up.stdout:  # bounded by pytest's timeout; the stack prints its ready line once
            seen.append(line)
            if READY in line:
                break
        assert any(READY in line for line in seen), "".join(seen)
        children = descendants(up.pid)
        assert len(children) >= 5, f"Azurite, the events proxy, both emulators and the host: {children}"

        second = subprocess.run([sys.executable, "-m", "local.cli", "up", "--http-port", "0", "--batch-port", "0",
                                 "--servicebus-port", "0"], env=env, capture_output=True, text=True, timeout=60)
        assert second.returncode == 2
        assert "orchestrator up is already running (pid " in second.stderr
        assert f"pid {up.pid}, functions at http://127.0.0.1:" in second.stderr

        up.stdout.close()  # tee is gone...
        os.killpg(up.pid, signal.SIGINT)  # ...and the terminal's Ctrl-C reaches the whole group
        assert up.wait(timeout=120) == 0
        left = wait_until(lambda: not any(alive(pid) for pid in children) or None, 60, 0.2,
                          what="every child of `up` to end")
        assert left
        assert not (tmp_path / "data" / "endpoints.json").exists()
    finally:
        if up.poll() is None:
            os.killpg(up.pid, signal.SIGKILL)
            up.wait()


def test_closing_the_terminal_stops_every_child(tmp_path):
    """The terminal window closed: SIGHUP, and every later write to it fails with EIO (not EPIPE)."""
    import pty

    env = {**os.environ, "ORCHESTRATOR_DATA_DIR": str(tmp_path / "data"), "COLUMNS": "200"}
    master, slave = pty.openpty()
    up = subprocess.Popen([sys.executable, "-m", "local.cli", "up", "--http-port", "0", "--batch-port", "0",
                           "--servicebus-port", "0", "--pool", "up-pool:1:1"], env=env, stdin=slave, stdout=slave,
                          stderr=slave, start_new_session=True)
    os.close(slave)
    try:
        seen = b""
        while READY.encode() not in seen:  # bounded by pytest's timeout
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
        assert READY.encode() in seen, seen.decode(errors="replace")[-2000:]
        children = descendants(up.pid)
        os.close(master)  # the window is gone...
        master = -1
        os.killpg(up.pid, signal.SIGHUP)  # ...and the session is hung up
        assert up.wait(timeout=120) == 0
        assert wait_until(lambda: not any(alive(pid) for pid in children) or None, 60, 0.2,
                          what="every child of `up` to end")
        assert not (tmp_path / "data" / "endpoints.json").exists()
    finally:
        if master >= 0:
            os.close(master)
        if up.poll() is None:
            os.killpg(up.pid, signal.SIGKILL)
            up.wait()
