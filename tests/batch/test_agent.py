"""The node agent (local/batch/agent.py) as the emulator drives it: a real agent process per test."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest

from local.batch import process
from tests.waiting import wait_until


@pytest.fixture
async def agent():
    node = process.NodeAgent("tvmps_test_d")
    yield node
    await node.close()


def _paths(tmp_path, name="t1"):
    task_dir = tmp_path / name
    wd = task_dir / "wd"
    return {"cwd": str(wd), "dirs": [str(task_dir), str(wd)],
            "stdout": str(task_dir / "stdout.txt"), "stderr": str(task_dir / "stderr.txt")}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it is dead for our purposes.
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()[0] != "Z"


async def test_runs_in_its_working_directory_with_its_environment(agent, tmp_path):
    paths = _paths(tmp_path)
    script = "import os; print(os.getcwd(), os.environ['GREETING'])"
    running = await agent.start_command(f'{sys.executable} -c "{script}"', env={"GREETING": "hello"}, **paths)
    outcome = await process.wait(running, timeout=30)
    assert outcome == process.Outcome(0, None)
    assert (tmp_path / "t1" / "stdout.txt").read_text().split() == [paths["cwd"], "hello"]


@pytest.mark.parametrize(("command_line", "code"), [
    ("/no/such/program", "CommandProgramNotFound"),
    ("", "CommandLineEmpty"),
    ("echo 'unclosed", "CommandLineParseError"),
])
async def test_a_command_that_cannot_start_gets_batchs_failure(agent, tmp_path, command_line, code):
    running = await agent.start_command(command_line, env={}, **_paths(tmp_path))
    outcome = await process.wait(running, timeout=30)
    assert (outcome.exit_code, outcome.failure["code"]) == (None, code)


async def test_nonzero_exit_and_time_limit(agent, tmp_path):
    failed = await process.wait(await agent.start_command("/bin/false", env={}, **_paths(tmp_path, "a")), 30)
    assert (failed.exit_code, failed.failure["code"]) == (1, "FailureExitCode")
    slow = await process.wait(await agent.start_command("sleep 60", env={"PATH": os.environ["PATH"]},
                                                        **_paths(tmp_path, "b")), timeout=0.2)
    assert (slow.exit_code, slow.failure["code"]) == (-signal.SIGKILL, "MaxWallClockTimeExpiry")


async def test_processes_left_behind_by_a_task_are_killed_with_it(agent, tmp_path):
    pid_file = tmp_path / "orphan.pid"
    script = ("import subprocess, sys; p = subprocess.Popen(['sleep', '60']); "
              f"open({str(pid_file)!r}, 'w').write(str(p.pid))")
    outcome = await process.wait(await agent.start_command(f'{sys.executable} -c "{script}"',
                                                           env={"PATH": os.environ["PATH"]}, **_paths(tmp_path)), 30)
    assert outcome.failure is None
    orphan = int(pid_file.read_text())
    await asyncio.to_thread(wait_until, lambda: not _alive(orphan), 10, 0.05, "the task's orphan to be killed")


async def test_a_dead_agent_fails_its_runs_ends_their_processes_and_the_next_run_starts_a_new_one(agent, tmp_path):
    pid_file = tmp_path / "sleeper.pid"
    script = f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(60)"
    running = await agent.start_command(f'{sys.executable} -c "{script}"', env={}, **_paths(tmp_path, "a"))
    await asyncio.to_thread(wait_until, lambda: pid_file.exists() and pid_file.read_text(), 10, 0.05,
                            "the task to start")
    os.kill(agent._proc.pid, signal.SIGKILL)
    outcome = await process.wait(running, timeout=30)
    assert (outcome.exit_code, outcome.failure["code"]) == (None, "NodeAgentFailed")
    orphan = int(pid_file.read_text())
    await asyncio.to_thread(wait_until, lambda: not _alive(orphan), 10, 0.05, "the orphaned task to be killed")
    again = await process.wait(await agent.start_command("/bin/true", env={}, **_paths(tmp_path, "b")), 30)
    assert again == process.Outcome(0, None)


async def test_closing_the_agent_kills_what_it_started(tmp_path):
    node = process.NodeAgent("tvmps_test_d")
    pid_file = tmp_path / "sleeper.pid"
    script = f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(60)"
    running = await node.start_command(f'{sys.executable} -c "{script}"', env={}, **_paths(tmp_path))
    await asyncio.to_thread(wait_until, lambda: pid_file.exists() and pid_file.read_text(), 10, 0.05, "the task to start")
    await node.close()
    assert not _alive(int(pid_file.read_text()))
    assert node._proc.returncode == 0  # the agent exited on its own once its stdin closed, not killed
    assert (await process.wait(running, 30)).failure["code"] == "NodeAgentFailed"


def test_a_crashed_emulator_leaves_no_task_or_agent_behind(tmp_path):
    import azure.batch.models as m

    from local.batch.control import EmulatorProcess

    emulator = EmulatorProcess(tmp_path / "ws", ["crash:1:1"], log_file=tmp_path / "emulator.log")
    client = emulator.start().client()
    pid_file = tmp_path / "task.pid"
    script = f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(60)"
    try:
        client.create_job(m.BatchJobCreateOptions(id="j", pool_info=m.BatchPoolInfo(pool_id="crash")))
        client.create_task("j", m.BatchTaskCreateOptions(id="t", command_line=f'{sys.executable} -c "{script}"'))
        wait_until(lambda: pid_file.exists() and pid_file.read_text(), 30, 0.05, "the task to start")
        # The emulator's child processes are its node agents.
        agents = [int(pid) for f in (Path("/proc") / str(emulator.child.proc.pid) / "task").glob("*/children")
                  for pid in f.read_text().split()]
        emulator.child.stop(kill=True)
    finally:
        client.close()
        emulator.stop()
    task = int(pid_file.read_text())
    wait_until(lambda: not _alive(task), 10, 0.05, "the task to be killed by its agent")
    assert agents, "the emulator had no agent process"
    wait_until(lambda: not any(_alive(a) for a in agents), 10, 0.05, "the agents to exit")


def test_without_pidfds_the_agent_finds_exits_by_polling(tmp_path, monkeypatch):
    import io
    import json
    import threading

    from local.batch import agent as agent_module

    monkeypatch.setattr(agent_module, "_pidfd", lambda pid: None)  # as on macOS or a kernel before 5.3
    out = io.StringIO()
    node = agent_module.Agent(out=out)
    read_end, write_end = os.pipe()
    server = threading.Thread(target=node.serve, args=(read_end,), daemon=True)
    server.start()
    try:
        for request_id, command in ((1, "/bin/true"), (2, "/bin/false")):
            request = {"op": "run", "id": request_id, "commandLine": command, "env": {},
                       **_paths(tmp_path, f"t{request_id}")}
            os.write(write_end, json.dumps(request).encode() + b"\n")

        def exits():
            replies = [json.loads(line) for line in out.getvalue().splitlines()]
            found = {r["id"]: r["exit"] for r in replies if "exit" in r}
            return found if len(found) == 2 else None

        assert wait_until(exits, 10, 0.05, "both exits to be reported") == {1: 0, 2: 1}
    finally:
        os.close(write_end)
        server.join(10)
        os.close(read_end)
    assert not server.is_alive(), "the agent did not stop when its stdin closed"


async def test_an_agent_that_cannot_start_fails_the_task_and_is_tried_again(tmp_path, monkeypatch):
    node = process.NodeAgent("tvmps_test_d")
    monkeypatch.setattr(process, "AGENT", tmp_path / "no-such-agent.py")
    monkeypatch.setattr(process.sys, "executable", str(tmp_path / "no-such-python"))
    first = await process.wait(await node.start_command("/bin/true", env={}, **_paths(tmp_path, "a")), 30)
    assert (first.exit_code, first.failure["code"]) == (None, "NodeAgentFailed")
    monkeypatch.undo()
    try:
        again = await process.wait(await node.start_command("/bin/true", env={}, **_paths(tmp_path, "b")), 30)
        assert again == process.Outcome(0, None)
    finally:
        await node.close()
