"""How tasks, preparation and release tasks run: failures, retries, time limits, environment, reboots."""

from __future__ import annotations

import azure.batch.models as m
from azure.batch.models._models import BatchJobTerminateOptions, BatchNodeRebootOptions

from local.batch.pools import node_id_for
from tests.batch.jobs import bash, create_job, tasks, terminate, wait_job_state, wait_tasks_done
from tests.waiting import wait_until


def task_stdout(client, job_id: str, task_id: str) -> str:
    return b"".join(client.download_task_file(job_id, task_id, "stdout.txt")).decode()


def prep_statuses(client, job_id: str) -> dict:
    return {s.node_id: s for s in client.list_job_preparation_and_release_task_status(job_id)}


def test_prep_failing_everywhere_leaves_tasks_active_and_runs_no_release(batch_client, job_id):
    create_job(batch_client, job_id, "pool-2x1", prep="/bin/false", release="/bin/true",
               prep_options={"constraints": m.BatchTaskConstraints(max_task_retry_count=1)})
    batch_client.create_tasks(job_id, tasks(("a", "/bin/true"), ("b", "/bin/true")))
    statuses = wait_until(lambda: (s := prep_statuses(batch_client, job_id)) and len(s) == 2 and all(
        x.job_preparation_task_execution_info.state == "completed" for x in s.values()) and s,
        what="prep to fail on both nodes")
    for status in statuses.values():
        prep = status.job_preparation_task_execution_info
        assert (prep.exit_code, prep.result, prep.retry_count) == (1, "failure", 1)
        assert prep.failure_info.code == "FailureExitCode"
    counts = batch_client.get_job_task_counts(job_id).task_counts
    assert (counts.active, counts.running, counts.completed) == (2, 0, 0), "no eligible node: tasks wait"
    terminate(batch_client, job_id)
    for status in prep_statuses(batch_client, job_id).values():
        assert status.job_release_task_execution_info is None, "release runs only where the job ran"


def test_prep_failing_on_one_node_moves_tasks_to_the_other(batch_client, job_id):
    bad = node_id_for("pool-2x1", 0)
    create_job(batch_client, job_id, "pool-2x1", prep=bash(f'test "$AZ_BATCH_NODE_ID" != {bad}'),
               release="/bin/true")
    batch_client.create_tasks(job_id, tasks(*[(f"t{i}", "/bin/true") for i in range(6)]))
    counts = wait_tasks_done(batch_client, job_id, 6)
    assert counts.succeeded == 6
    assert {t.node_info.node_id for t in batch_client.list_tasks(job_id)} == {node_id_for("pool-2x1", 1)}
    statuses = prep_statuses(batch_client, job_id)
    assert statuses[bad].job_preparation_task_execution_info.result == "failure"
    terminate(batch_client, job_id)
    statuses = prep_statuses(batch_client, job_id)
    assert statuses[bad].job_release_task_execution_info is None
    assert statuses[node_id_for("pool-2x1", 1)].job_release_task_execution_info.exit_code == 0


def test_task_retries_until_success_and_gives_up_after_max(batch_client, job_id, scratch):
    counter = scratch / "attempts"
    flaky = bash(f'echo x >> {counter}; [ $(wc -l < {counter}) -ge 3 ]')
    create_job(batch_client, job_id, "pool-2x4")
    batch_client.create_task(job_id, m.BatchTaskCreateOptions(
        id="flaky", command_line=flaky, constraints=m.BatchTaskConstraints(max_task_retry_count=5)))
    batch_client.create_task(job_id, m.BatchTaskCreateOptions(
        id="broken", command_line=bash("exit 3"), constraints=m.BatchTaskConstraints(max_task_retry_count=1)))
    wait_tasks_done(batch_client, job_id, 2)
    flaky_task = batch_client.get_task(job_id, "flaky").execution_info
    assert (flaky_task.retry_count, flaky_task.exit_code, flaky_task.result) == (2, 0, "success")
    broken = batch_client.get_task(job_id, "broken").execution_info
    assert (broken.retry_count, broken.exit_code, broken.result) == (1, 3, "failure")
    assert (broken.failure_info.category, broken.failure_info.code) == ("usererror", "FailureExitCode")
    counts = batch_client.get_job_task_counts(job_id).task_counts
    assert (counts.succeeded, counts.failed) == (1, 1)


def test_task_wall_clock_limit_kills_the_task(batch_client, job_id):
    create_job(batch_client, job_id, "pool-2x4")
    batch_client.create_task(job_id, m.BatchTaskCreateOptions(
        id="slow", command_line="sleep 30", constraints=m.BatchTaskConstraints(max_wall_clock_time="PT1S")))
    wait_tasks_done(batch_client, job_id, 1, timeout=15)
    info = batch_client.get_task(job_id, "slow").execution_info
    assert info.result == "failure" and info.failure_info.code == "MaxWallClockTimeExpiry"
    assert (info.end_time - info.start_time).total_seconds() < 10


def test_job_wall_clock_limit_terminates_and_runs_release(batch_client, job_id):
    create_job(batch_client, job_id, "pool-1x1", prep="/bin/true", release="/bin/true",
               constraints=m.BatchJobConstraints(max_wall_clock_time="PT2S"))
    batch_client.create_task(job_id, m.BatchTaskCreateOptions(id="long", command_line="sleep 60"))
    job = wait_job_state(batch_client, job_id, "completed", timeout=20)
    assert job.execution_info.termination_reason == "MaxWallClockTimeExpiry"
    task = batch_client.get_task(job_id, "long")
    assert task.state == "completed" and task.execution_info.failure_info.code == "TaskEnded"
    (status,) = prep_statuses(batch_client, job_id).values()
    assert status.job_release_task_execution_info.exit_code == 0


def test_command_lines_run_without_a_shell_in_the_batch_environment(batch_client, job_id):
    create_job(batch_client, job_id, "pool-2x4", prep="/bin/true", release="/bin/true",
               common_environment_settings=[m.EnvironmentSetting(name="COMMON", value="c"),
                                            m.EnvironmentSetting(name="OVERRIDE", value="job")])
    batch_client.create_tasks(job_id, [
        m.BatchTaskCreateOptions(id="literal", command_line="echo $AZ_BATCH_POOL_ID 'two words'"),
        m.BatchTaskCreateOptions(id="env", command_line="env", environment_settings=[
            m.EnvironmentSetting(name="OVERRIDE", value="task")]),
        m.BatchTaskCreateOptions(id="missing", command_line="no-such-program --flag"),
    ])
    wait_tasks_done(batch_client, job_id, 3)
    assert task_stdout(batch_client, job_id, "literal") == "$AZ_BATCH_POOL_ID two words\n"
    env = dict(line.split("=", 1) for line in task_stdout(batch_client, job_id, "env").splitlines() if "=" in line)
    task = batch_client.get_task(job_id, "env")
    root = env["AZ_BATCH_NODE_ROOT_DIR"]
    assert env["AZ_BATCH_POOL_ID"] == "pool-2x4"
    assert env["AZ_BATCH_JOB_ID"] == job_id and env["AZ_BATCH_TASK_ID"] == "env"
    assert env["AZ_BATCH_NODE_ID"] == task.node_info.node_id
    assert env["AZ_BATCH_NODE_SHARED_DIR"] == f"{root}/shared"
    assert env["AZ_BATCH_TASK_DIR"] == f"{root}/{task.node_info.task_root_directory}"
    assert env["AZ_BATCH_TASK_WORKING_DIR"] == env["AZ_BATCH_TASK_DIR"] + "/wd" == env["HOME"]
    assert env["AZ_BATCH_JOB_PREP_DIR"] == f"{root}/workitems/{job_id}/job-1/jobpreparation"
    assert env["PATH"].endswith(f":{root}/shared:{env['AZ_BATCH_TASK_WORKING_DIR']}")
    assert (env["COMMON"], env["OVERRIDE"]) == ("c", "task")
    assert "BATCH_KEY" not in env, "the emulator's own environment does not leak into tasks"
    missing = batch_client.get_task(job_id, "missing").execution_info
    assert missing.result == "failure" and missing.failure_info.code == "CommandProgramNotFound"
    files = {f.name for f in batch_client.list_task_files(job_id, "env")}
    assert {"stdout.txt", "stderr.txt", "wd"} <= files


def test_all_tasks_complete_terminates_job_after_patch(batch_client, job_id):
    create_job(batch_client, job_id, "pool-2x4", all_tasks_complete_mode="noaction")
    batch_client.create_tasks(job_id, tasks(("one", "/bin/true"), ("two", "/bin/true")))
    wait_tasks_done(batch_client, job_id, 2)
    assert batch_client.get_job(job_id).state == "active", "noaction keeps the job open"
    batch_client.update_job(job_id, m.BatchJobUpdateOptions(all_tasks_complete_mode="terminatejob"))
    job = wait_job_state(batch_client, job_id, "completed")
    assert job.execution_info.termination_reason == "AllTasksComplete"


def test_terminatejob_fires_at_once_on_an_empty_job(batch_client, job_id):
    create_job(batch_client, job_id, "pool-2x4", all_tasks_complete_mode="terminatejob")
    job = wait_job_state(batch_client, job_id, "completed")
    assert job.execution_info.termination_reason == "AllTasksComplete"


def test_terminate_kills_running_tasks_and_leaves_active_ones(batch_client, job_id):
    create_job(batch_client, job_id, "pool-1x1")
    for task in tasks(("running", "sleep 60"), ("queued", "/bin/true")):
        batch_client.create_task(job_id, task)  # one slot: the first added runs, the second waits
    wait_until(lambda: batch_client.get_task(job_id, "running").state == "running", what="task running")
    batch_client.begin_terminate_job(job_id, BatchJobTerminateOptions(termination_reason="Stop"),
                                     polling_interval=0.1).result()
    assert batch_client.get_job(job_id).execution_info.termination_reason == "Stop"
    assert batch_client.get_task(job_id, "running").execution_info.failure_info.code == "TaskEnded"
    assert batch_client.get_task(job_id, "queued").state == "active"


def test_delete_active_job_runs_release_then_removes_it(batch_client, job_id):
    marker = f"$AZ_BATCH_NODE_SHARED_DIR/{job_id}.released"
    create_job(batch_client, job_id, "pool-1x1", prep="/bin/true", release=bash(f"touch {marker}"))
    batch_client.create_task(job_id, m.BatchTaskCreateOptions(id="t", command_line="/bin/true"))
    wait_tasks_done(batch_client, job_id, 1)
    batch_client.begin_delete_job(job_id, polling_interval=0.1).result()
    assert not any(j.id == job_id for j in batch_client.list_jobs())
    node = node_id_for("pool-1x1", 0)
    names = {f.name for f in batch_client.list_node_files("pool-1x1", node, recursive=True)}
    assert f"shared/{job_id}.released" in names
    assert not any(n.startswith(f"workitems/{job_id}/") for n in names), "the job's task folders are removed"


def test_node_reboot_requeues_running_task_and_reruns_prep(batch_client, job_id, scratch):
    preps = scratch / "preps"
    create_job(batch_client, job_id, "pool-1x1", prep=bash(f"echo p >> {preps}"), release="/bin/true")
    attempt = scratch / "attempt"
    # First run sleeps (and is killed by the reboot); the requeued run finds the marker and exits at once.
    script = bash(f"if [ -e {attempt} ]; then exit 0; fi; touch {attempt}; sleep 60")
    batch_client.create_task(job_id, m.BatchTaskCreateOptions(id="t", command_line=script))
    wait_until(lambda: attempt.exists(), what="first attempt started")
    node = node_id_for("pool-1x1", 0)
    batch_client.begin_reboot_node("pool-1x1", node, BatchNodeRebootOptions(node_reboot_kind="requeue"),
                                   polling_interval=0.1).result()
    wait_tasks_done(batch_client, job_id, 1)
    info = batch_client.get_task(job_id, "t").execution_info
    assert (info.requeue_count, info.retry_count, info.result) == (1, 0, "success")
    assert preps.read_text().count("p") == 2, "prep ran again after the reboot"
    terminate(batch_client, job_id)


def test_terminate_while_prep_runs_frees_every_waiting_task(batch_client, job_id):
    """Tasks placed on a node wait there for its preparation task; ending the job then must hand back every
    one of them (each node's slots included), not every second one."""
    create_job(batch_client, job_id, "pool-2x4", prep="/bin/sleep 60", release="/bin/true")
    batch_client.create_tasks(job_id, tasks(*[(f"t{i}", "/bin/true") for i in range(8)]))
    wait_until(lambda: sum(1 for t in batch_client.list_tasks(job_id) if t.state == "preparing") == 8,
               what="all 8 tasks waiting on the preparation tasks")
    terminate(batch_client, job_id)
    wait_job_state(batch_client, job_id, "completed")
    assert sorted(t.state for t in batch_client.list_tasks(job_id)) == ["active"] * 8
    assert batch_client.get_job_task_counts(job_id).task_counts.running == 0


def test_missed_completion_mode_leaves_a_finished_job_active(batch_emulator, batch_client, job_id):
    """Opt-in: terminatejob set after every task completed does not end the job, as users report of Batch."""
    create_job(batch_client, job_id, "pool-2x4", all_tasks_complete_mode="noaction")
    batch_client.create_tasks(job_id, tasks(("a", "/bin/true"), ("b", "/bin/true")))
    wait_tasks_done(batch_client, job_id, 2)
    batch_emulator.set_faults(missedCompletion=True)
    try:
        batch_client.update_job(job_id, m.BatchJobUpdateOptions(all_tasks_complete_mode="terminatejob"))
    finally:
        batch_emulator.set_faults(missedCompletion=False)
    job = batch_client.get_job(job_id)
    assert (job.state, job.all_tasks_complete_mode) == ("active", "terminatejob")
    # Without the mode, the same update ends the job at once, as Batch documents.
    other = f"{job_id}-2"
    create_job(batch_client, other, "pool-2x4", all_tasks_complete_mode="noaction")
    batch_client.create_tasks(other, tasks(("a", "/bin/true")))
    wait_tasks_done(batch_client, other, 1)
    batch_client.update_job(other, m.BatchJobUpdateOptions(all_tasks_complete_mode="terminatejob"))
    assert wait_job_state(batch_client, other, "completed").execution_info.termination_reason == "AllTasksComplete"
    terminate(batch_client, job_id)


def test_node_files_are_read_by_range(batch_client, job_id):
    create_job(batch_client, job_id, "pool-1x1", prep=bash("seq 1 1000"), release="/bin/true")
    batch_client.create_tasks(job_id, tasks(("a", "/bin/true")))
    wait_tasks_done(batch_client, job_id, 1)
    (status,) = prep_statuses(batch_client, job_id).values()
    path = f"workitems/{job_id}/job-1/jobpreparation/stdout.txt"
    whole = b"".join(batch_client.download_node_file("pool-1x1", status.node_id, path))
    props = batch_client.get_node_file_properties("pool-1x1", status.node_id, path)
    assert props.content_length == len(whole) == len("".join(f"{i}\n" for i in range(1, 1001)))
    tail = b"".join(batch_client.download_node_file("pool-1x1", status.node_id, path,
                                                    ocp_range=f"bytes={len(whole) - 9}-{len(whole) - 1}"))
    assert tail == b"999\n1000\n"[-9:] and tail == whole[-9:]
    terminate(batch_client, job_id)
