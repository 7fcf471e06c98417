"""The CLI's own checks, run as a user would through its command line (typer's runner, in process): what it
refuses before anything is sent or started, and what it says then."""

from __future__ import annotations

import json
import socket
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from local import cli
from shared.pure import metadata as md
from shared.pure.request import parse_request, request_hash
from shared.pure.values import Job, TaskCounts

runner = CliRunner()
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "job-request.json"


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("ORCHESTRATOR_DATA_DIR", str(tmp_path / "data"))
    return tmp_path / "data"


def run(*args: str, **kwargs):
    return runner.invoke(cli.app, list(args), **kwargs)


def one_line(text: str) -> str:
    return " ".join(text.split())


@pytest.mark.parametrize("command", ["submit", "logs", "up", "reset"])
def test_flags_show_no_value_placeholder(command):
    helped = run(command, "--help", env={"COLUMNS": "200"})
    assert helped.exit_code == 0
    assert "<bool>" not in helped.output
    assert "--help" in helped.output


def test_validation_errors_keep_their_rule_names(tmp_path):
    request = tmp_path / "bad.json"
    request.write_text(json.dumps({"poolId": "demo-pool", "timeout": "soon",
                                   "release": {"commandLine": "x", "maxWallClock": "PT1H"}}))
    refused = run("submit", str(request))
    assert refused.exit_code == 2
    assert "[iso8601_duration]" in refused.output
    assert "release.maxWallClock: must be at most PT15M (Batch's limit for a release task) [release_wall_clock]" \
        in one_line(refused.output)


def test_a_request_over_a_service_bus_message_is_refused_with_how_to_shrink_it(tmp_path, data_dir):
    tasks = [{"id": f"t{i}", "commandLine": "/bin/bash -c 'echo " + "x" * 200 + "'"} for i in range(1500)]
    request = tmp_path / "big.json"
    request.write_text(json.dumps({"jobId": "big", "poolId": "demo-pool", "timeout": "PT1H", "tasks": tasks}))
    assert request.stat().st_size > cli.MAX_REQUEST_BYTES
    refused = run("submit", str(request))
    assert refused.exit_code == 2
    said = one_line(refused.output)
    assert "The request is too big; nothing was sent." in said
    assert f"the request is {request.stat().st_size / 1024:.0f} KB" in said
    assert "at most 256 KB (standard tier)" in said and "`taskFactory`" in said


@pytest.mark.parametrize(("size", "refused"), [(cli.MAX_REQUEST_BYTES, False), (cli.MAX_REQUEST_BYTES + 1, True)])
def test_the_size_limit_leaves_room_for_the_message_properties(size, refused):
    assert (cli.size_problem(b"x" * size) is not None) is refused
    assert cli.MAX_REQUEST_BYTES == 256 * 1024 - 4 * 1024


@pytest.mark.parametrize("flag", ["--http-port", "--batch-port", "--servicebus-port"])
def test_up_refuses_a_port_out_of_range_naming_the_flag(flag, data_dir):
    refused = run("up", flag, "99999")
    assert refused.exit_code == 2
    assert f"Invalid value for '{flag}': 99999 is not a port: a port is 1 to 65535 (0 picks a free one)" \
        in one_line(refused.output)
    assert not (data_dir / "local").exists(), "nothing was started"


def test_up_says_which_port_is_in_use_before_starting_anything(data_dir):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        refused = run("up", "--batch-port", str(port), "--http-port", "0", "--servicebus-port", "0")
    assert refused.exit_code == 2
    assert (f"port {port} (--batch-port) is in use on 127.0.0.1 (Address already in use): stop the program using "
            "it, or pass --batch-port with another port (0 picks a free one)") in one_line(refused.output)
    assert not (data_dir / "local").exists()


def test_a_second_up_says_one_is_running(data_dir):
    first = cli.StackLock(data_dir)
    assert first.acquire()
    first.note("pid 4242, functions at http://127.0.0.1:7071")
    try:
        second = run("up", "--http-port", "0", "--batch-port", "0", "--servicebus-port", "0")
    finally:
        first.release()
    assert second.exit_code == 2
    assert ("orchestrator up is already running (pid 4242, functions at http://127.0.0.1:7071): use it as it is"
            in one_line(second.output))


def test_a_start_failure_names_this_commands_flags():
    text = cli.start_failure_text(RuntimeError("dev host did not start within 60s; its log ends:\ncannot listen on "
                                               "127.0.0.1:7071; another host may be running: stop it or pass --port"))
    assert "stop it or pass --http-port" in text and "pass --port" not in text
    assert "--http-port, --batch-port, --servicebus-port (0 picks a free one)" in text


def test_reset_asks_first_and_keeps_everything_when_not_confirmed(data_dir):
    (data_dir / "local" / "azurite").mkdir(parents=True)
    kept = run("reset", input="n\n")
    assert kept.exit_code == 1 and "nothing deleted" in kept.output
    assert (data_dir / "local" / "azurite").is_dir()

    done = run("reset", input="y\n")
    assert done.exit_code == 0, done.output
    assert f"deleted {data_dir / 'local'}" in one_line(done.output)
    assert not (data_dir / "local").exists()


def test_reset_refuses_while_up_runs(data_dir):
    (data_dir / "local").mkdir(parents=True)
    running = cli.StackLock(data_dir)
    assert running.acquire()
    try:
        refused = run("reset", "--yes")
    finally:
        running.release()
    assert refused.exit_code == 2 and "orchestrator up is running" in refused.output
    assert (data_dir / "local").is_dir()


def test_a_download_folder_that_cannot_be_made_is_said_in_words(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(cli.CannotWrite) as refused:
        cli._inside(blocker / "logs", "job", "node", "bundle.zip")
    assert str(refused.value).startswith(f"cannot write into {blocker / 'logs'}: Not a directory")


class OneJob:
    """Batch as the CLI sees it through our adapter's interface: one job, created with `meta`."""

    def __init__(self, meta, interrupt_after: int | None = None):
        self.meta, self.calls, self.interrupt_after = meta, 0, interrupt_after

    def get_job(self, job_id):
        self.calls += 1
        if self.interrupt_after is not None and self.calls > self.interrupt_after:
            raise KeyboardInterrupt  # what Ctrl-C raises in the waiting loop
        return Job(id=job_id, state="active", metadata=self.meta)

    def task_counts(self, job_id):
        return TaskCounts(active=8)


class NoQueue:
    def send(self, *args):
        raise AssertionError("the same request must not be sent again")


def _submitted(tmp_path, monkeypatch, interrupt_after=None):
    body = json.loads(EXAMPLE.read_text())
    request_file = tmp_path / "request.json"
    request_file.write_text(json.dumps(body))
    digest = request_hash(parse_request(request_file.read_bytes()))
    meta = md.encode(md.JobMetadata(datetime(2030, 1, 1, tzinfo=UTC), digest, 8))
    services = SimpleNamespace(batch=OneJob(meta, interrupt_after), queue=NoQueue(),
                               store=SimpleNamespace(report=lambda job_id: None))
    monkeypatch.setattr(cli, "_services", lambda: services)
    return request_file, body["jobId"]


def test_the_same_request_again_is_already_submitted_and_not_sent(tmp_path, monkeypatch):
    request_file, job_id = _submitted(tmp_path, monkeypatch)
    again = run("submit", str(request_file))
    assert again.exit_code == 0, again.output
    assert (f"already submitted: job {job_id} exists with this same request; nothing was sent (follow it: "
            f"orchestrator status {job_id})") in one_line(again.output)


def test_ctrl_c_while_waiting_says_the_job_keeps_running_and_how_to_follow_it(tmp_path, monkeypatch):
    request_file, job_id = _submitted(tmp_path, monkeypatch, interrupt_after=2)
    stopped = run("submit", str(request_file), "--wait", "--timeout", "60")
    assert stopped.exit_code == cli.EXIT_INTERRUPTED == 130
    said = one_line(stopped.output)
    assert f"stopped waiting: job {job_id} keeps running (Ctrl-C only stops this command)" in said
    assert f"Follow it with `orchestrator status {job_id}`" in said


def test_a_part_not_installed_is_not_blamed_on_a_port():
    text = cli.start_failure_text(FileNotFoundError("azurite not found: run `make install` (npm ci) first"))
    assert text == "azurite not found: run `make install` (npm ci) first"
