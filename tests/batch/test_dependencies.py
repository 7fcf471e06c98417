"""Task dependencies (https://learn.microsoft.com/azure/batch/batch-task-dependencies), through the azure-batch SDK:
dependants wait in active until their parents succeed; a failed parent blocks them unless its exitConditions
give dependencyAction satisfy."""

from __future__ import annotations

import azure.batch.models as m
import pytest
from azure.core.exceptions import HttpResponseError

from tests.batch.jobs import bash, create_job, tasks, terminate, wait_tasks_done
from tests.waiting import wait_until


def depends(*ids: str, ranges: tuple = ()) -> m.BatchTaskDependencies:
    return m.BatchTaskDependencies(task_ids=list(ids) or None,
                                   task_id_ranges=[m.BatchTaskIdRange(start=s, end=e) for s, e in ranges] or None)


def stdout(client, job_id: str, task_id: str) -> str:
    return b"".join(client.download_task_file(job_id, task_id, "stdout.txt")).decode()


def test_dependant_waits_for_every_parent(batch_client, job_id, scratch):
    gate, done = scratch / "gate", scratch / "a.done"
    create_job(batch_client, job_id, "pool-2x4", uses_task_dependencies=True)
    batch_client.create_tasks(job_id, [
        m.BatchTaskCreateOptions(id="a", command_line=bash(f"while [ ! -e {gate} ]; do sleep 0.05; done; "
                                                           f"echo done > {done}")),
        m.BatchTaskCreateOptions(id="b", command_line="/bin/true"),
        m.BatchTaskCreateOptions(id="c", command_line=f"cat {done}", depends_on=depends("a", "B")),
    ])
    wait_until(lambda: batch_client.get_task(job_id, "a").state == "running", what="parent a running")
    wait_until(lambda: batch_client.get_task(job_id, "b").state == "completed", what="parent b completed")
    # A task added after b completed has run to completion: the scheduler has passed since, with slots free.
    batch_client.create_task(job_id, m.BatchTaskCreateOptions(id="sentinel", command_line="/bin/true"))
    wait_until(lambda: batch_client.get_task(job_id, "sentinel").state == "completed", what="sentinel done")
    waiting = batch_client.get_task(job_id, "c")
    assert (waiting.state, waiting.execution_info.start_time) == ("active", None)
    gate.touch()
    wait_tasks_done(batch_client, job_id, 4)
    c, a = batch_client.get_task(job_id, "c"), batch_client.get_task(job_id, "a")
    assert c.execution_info.result == "success" and stdout(batch_client, job_id, "c") == "done\n"
    assert c.execution_info.start_time >= a.execution_info.end_time
    assert c.depends_on.task_ids == ["a", "B"]
    terminate(batch_client, job_id)


def test_range_dependencies_cover_integer_ids(batch_client, job_id, scratch):
    out = scratch / "order"
    create_job(batch_client, job_id, "pool-2x4", uses_task_dependencies=True)
    batch_client.create_tasks(job_id, [
        m.BatchTaskCreateOptions(id="last", command_line=bash(f"echo last >> {out}"), depends_on=depends(
            ranges=((1, 3),))),
        *tasks(*[(str(i), bash(f"echo {i} >> {out}")) for i in (1, 2, 3)]),
    ])
    wait_tasks_done(batch_client, job_id, 4)
    lines = out.read_text().split()
    assert sorted(lines[:3]) == ["1", "2", "3"] and lines[3] == "last"
    terminate(batch_client, job_id)


def test_failed_parent_blocks_unless_exit_conditions_satisfy(batch_client, job_id):
    create_job(batch_client, job_id, "pool-2x4", uses_task_dependencies=True)
    satisfy = m.ExitConditions(exit_codes=[m.ExitCodeMapping(code=3, exit_options=m.ExitOptions(
        dependency_action="satisfy"))])
    batch_client.create_tasks(job_id, [
        m.BatchTaskCreateOptions(id="bad", command_line=bash("exit 3")),
        m.BatchTaskCreateOptions(id="forgiven", command_line=bash("exit 3"), exit_conditions=satisfy),
        m.BatchTaskCreateOptions(id="blocked", command_line="/bin/true", depends_on=depends("bad")),
        m.BatchTaskCreateOptions(id="runs", command_line="/bin/true", depends_on=depends("forgiven")),
    ])
    wait_until(lambda: batch_client.get_task(job_id, "runs").state == "completed", what="dependant of forgiven")
    wait_until(lambda: batch_client.get_task(job_id, "bad").state == "completed", what="bad completed")
    batch_client.create_task(job_id, m.BatchTaskCreateOptions(id="sentinel", command_line="/bin/true"))
    wait_until(lambda: batch_client.get_task(job_id, "sentinel").state == "completed", what="sentinel done")
    assert batch_client.get_task(job_id, "runs").execution_info.result == "success"
    assert batch_client.get_task(job_id, "forgiven").execution_info.result == "failure"
    blocked = batch_client.get_task(job_id, "blocked")
    assert (blocked.state, blocked.execution_info.start_time) == ("active", None)
    counts = batch_client.get_job_task_counts(job_id).task_counts
    assert (counts.active, counts.succeeded, counts.failed) == (1, 2, 2)
    terminate(batch_client, job_id)


def test_depends_on_needs_a_job_that_uses_task_dependencies(batch_client, job_id):
    create_job(batch_client, job_id, "pool-2x4")
    with pytest.raises(HttpResponseError) as refused:
        batch_client.create_task(job_id, m.BatchTaskCreateOptions(id="x", command_line="/bin/true",
                                                                  depends_on=depends("y")))
    assert refused.value.error.code == "TaskDependenciesNotSpecifiedOnJob"
    result = batch_client.create_task_collection(job_id, m.BatchTaskGroup(task_values=[
        m.BatchTaskCreateOptions(id="x", command_line="/bin/true", depends_on=depends("y"))]))
    assert result.result_values[0].error.code == "TaskDependenciesNotSpecifiedOnJob"
    terminate(batch_client, job_id)
