"""The `orchestrator` CLI as a user runs it: a real process, pointed at the local stack by its settings."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

from tests.e2e.test_local_stack import EXAMPLE, send
from tests.waiting import wait_until


def orchestrator(stack, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    env = {**os.environ, **stack.app_settings(), "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "local.cli", *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_submit_wait_shows_progress_then_the_report(stack, tmp_path):
    job_id = f"cli-{uuid.uuid4().hex[:8]}"
    request = _request_file(tmp_path, "request", jobId=job_id)

    done = orchestrator(stack, "submit", str(request), "--wait", "--timeout", "120")
    assert done.returncode == 0, done.stderr
    assert f"sent: job {job_id}" in done.stdout
    assert f"{job_id}: completed, ended: AllTasksComplete" in done.stdout
    assert "completed 8, succeeded 8, failed 0" in done.stdout
    assert "collection complete: True" in done.stdout

    status = orchestrator(stack, "status", job_id)
    assert status.returncode == 0, status.stderr
    assert "files 24," in status.stdout and "collection complete: True" in status.stdout

    listing = orchestrator(stack, "logs", job_id)
    assert listing.returncode == 0, listing.stderr
    assert listing.stdout.count("job-1/jobrelease/stdout.txt") == 2

    target = tmp_path / "one"
    fetched = orchestrator(stack, "logs", job_id, "--file", "job-1/jobrelease/stdout.txt", "--download", str(target))
    assert fetched.returncode == 2 and "pass --node" in fetched.stderr, "on both nodes: which one?"
    nodes = sorted(set(re.findall(r"tvmps_\w+", listing.stdout)))
    assert len(nodes) == 2, listing.stdout
    release_out = []
    for node in nodes:
        one = orchestrator(stack, "logs", job_id, "--node", node, "--file", "job-1/jobrelease/stdout.txt")
        assert one.returncode == 0, one.stderr
        assert "ranged reads" in one.stderr
        release_out.append(one.stdout)
    # Each node's release task printed the shared file: prep's line first, then that node's tasks.
    assert len(release_out) == 2 and all(out.startswith("prep on tvmps_") for out in release_out)

    target = tmp_path / "downloaded"
    everything = orchestrator(stack, "logs", job_id, "--download", str(target))
    assert everything.returncode == 0, everything.stderr
    assert len(sorted(target.glob(f"{job_id}/*/bundles/*.zip"))) == 2

    missing = orchestrator(stack, "logs", job_id, "--node", nodes[0], "--file", "job-1/nope.txt")
    assert missing.returncode == 1 and "is not in node" in missing.stderr

    blocker = tmp_path / "a-file"
    blocker.write_text("")
    for args in (["--download", str(blocker / "logs")],
                 ["--node", nodes[0], "--file", "job-1/jobrelease/stdout.txt", "--download", str(blocker / "one")]):
        impossible = orchestrator(stack, "logs", job_id, *args)
        assert impossible.returncode == 2, impossible.stderr
        assert f"cannot write into {blocker}" in " ".join(impossible.stderr.split()) and "Not a directory" in \
            impossible.stderr
        assert "Traceback" not in impossible.stderr


def test_an_invalid_request_is_refused_locally_naming_the_field_and_rule(stack, tmp_path):
    request = tmp_path / "bad.json"
    request.write_text(json.dumps({"poolId": "demo-pool", "timeout": "soon"}))
    refused = orchestrator(stack, "submit", str(request))
    assert refused.returncode == 2
    assert "nothing was sent" in refused.stderr
    assert "timeout:" in refused.stderr


def test_a_request_too_big_for_one_message_is_refused_before_sending(stack, tmp_path):
    tasks = [{"id": f"t{i}", "commandLine": "/bin/bash -c 'echo " + "x" * 300 + "'"} for i in range(1000)]
    request = _request_file(tmp_path, "big", jobId=f"cli-big-{uuid.uuid4().hex[:8]}", tasks=tasks)
    del_factory = json.loads(request.read_text())
    del_factory.pop("taskFactory")
    request.write_text(json.dumps(del_factory))
    refused = orchestrator(stack, "submit", str(request))
    assert refused.returncode == 2, refused.stderr
    said = " ".join(refused.stderr.split())
    assert "The request is too big; nothing was sent." in said and "`taskFactory`" in said
    assert "Traceback" not in refused.stderr and "MessageSizeExceededError" not in refused.stderr


def test_status_of_an_unknown_job_says_what_to_check(stack):
    missing = orchestrator(stack, "status", "no-such-job-anywhere")
    assert missing.returncode == 1
    assert "orchestrator rejected" in missing.stderr


def test_rejected_lists_requests_the_function_refused(stack):
    job_id = f"cli-bad-{uuid.uuid4().hex[:8]}"
    send(stack, json.dumps({"jobId": job_id, "poolId": "demo-pool", "timeout": "soon"}).encode())

    def listed():
        out = orchestrator(stack, "rejected")
        return out if job_id in out.stdout else None

    out = wait_until(listed, 60, 0.5, what="the rejection to be listed")
    assert out.returncode == 0
    line = next(line for line in out.stdout.splitlines() if job_id in line)
    assert "timeout" in line

    status = orchestrator(stack, "status", job_id)
    assert status.returncode == 0
    assert f"{job_id} was rejected: invalid request: timeout:" in status.stdout


def _request_file(tmp_path, name: str, **changes) -> Path:
    body = json.loads(EXAMPLE.read_text())
    body.update(changes)
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(body))
    return path


def test_submit_wait_follows_its_own_message(stack, tmp_path):
    """A different request under an existing jobId is rejected, and --wait says so; the same request again
    is "already submitted"; a job whose task fails exits non-zero."""
    job_id = f"cli-follow-{uuid.uuid4().hex[:8]}"
    first = _request_file(tmp_path, "first", jobId=job_id)
    assert orchestrator(stack, "submit", str(first), "--wait", "--timeout", "120").returncode == 0

    same = _request_file(tmp_path, "same", jobId=job_id)
    again = orchestrator(stack, "submit", str(same), "--wait", "--timeout", "60")
    assert again.returncode == 0 and "already submitted" in again.stdout, again.stdout + again.stderr

    different = _request_file(tmp_path, "different", jobId=job_id, priority=7)
    refused = orchestrator(stack, "submit", str(different), "--wait", "--timeout", "60")
    assert refused.returncode == 6, refused.stdout + refused.stderr
    assert "rejected:" in refused.stderr and "already exists" in refused.stderr

    failing_id = f"cli-fail-{uuid.uuid4().hex[:8]}"
    body = json.loads(EXAMPLE.read_text())
    body["taskFactory"]["commandLine"] = "/bin/bash -c 'echo ERROR: bad input >&2; exit $(({0} % 4 == 0))'"
    failing = _request_file(tmp_path, "failing", jobId=failing_id, taskFactory=body["taskFactory"])
    failed = orchestrator(stack, "submit", str(failing), "--wait", "--timeout", "120")
    assert failed.returncode == 4, failed.stdout + failed.stderr
    assert "2 tasks failed" in failed.stderr and "ERROR: bad input" in failed.stdout
