"""Pool start tasks (https://learn.microsoft.com/rest/api/batchservice/pool/add#starttask), through the SDK: they
run on each node as it joins the pool and after each reboot; waitForSuccess holds tasks off the node until the
start task succeeds, and a start task that fails leaves the node in starttaskfailed."""

from __future__ import annotations

import azure.batch.models as m
from azure.batch.models._models import BatchNodeRebootOptions

from tests.batch.jobs import bash, create_job, tasks, terminate, wait_tasks_done
from tests.waiting import wait_until


def node_states(client, pool_id: str) -> list[str]:
    return sorted(n.state for n in client.list_nodes(pool_id))


def node_file(client, pool_id: str, node_id: str, path: str) -> str:
    return b"".join(client.download_node_file(pool_id, node_id, path)).decode()


def test_start_task_runs_on_every_node_before_its_tasks(batch_client, make_pool, job_id, scratch):
    gate = scratch / "gate"
    script = bash(f"echo started $AZ_BATCH_NODE_ID; while [ ! -e {gate} ]; do sleep 0.05; done; "
                  "touch $AZ_BATCH_NODE_SHARED_DIR/ready")
    pool = make_pool(2, 2, start_task=m.BatchStartTask(command_line=script))
    wait_until(lambda: node_states(batch_client, pool) == ["waitingforstarttask"] * 2, what="nodes waiting")
    create_job(batch_client, job_id, pool)
    batch_client.create_tasks(job_id, tasks(*[(f"t{i}", bash("test -e $AZ_BATCH_NODE_SHARED_DIR/ready"))
                                              for i in range(4)]))
    node = next(iter(batch_client.list_nodes(pool)))
    assert (node.start_task_info.state, node.start_task_info.start_time is not None) == ("running", True)
    assert batch_client.get_job_task_counts(job_id).task_counts.active == 4, "no task runs before the start task"
    gate.touch()
    counts = wait_tasks_done(batch_client, job_id, 4)
    assert counts.succeeded == 4
    for node in batch_client.list_nodes(pool):
        info = node.start_task_info
        assert (node.state, info.state, info.exit_code, info.result, info.retry_count) == (
            "idle", "completed", 0, "success", 0)
        assert node.start_task.command_line == script
        assert node_file(batch_client, pool, node.id, "startup/stdout.txt") == f"started {node.id}\n"
        names = {f.name for f in batch_client.list_node_files(pool, node.id, recursive=True)}
        assert {"startup/stdout.txt", "startup/stderr.txt", "startup/wd", "shared/ready"} <= names
    terminate(batch_client, job_id)


def test_failed_start_task_retries_then_leaves_the_node_out(batch_client, make_pool, job_id, scratch):
    attempts = scratch / "attempts"
    pool = make_pool(1, 1, start_task=m.BatchStartTask(command_line=bash(f"echo x >> {attempts}; exit 7"),
                                                       max_task_retry_count=2))
    (node,) = wait_until(lambda: (ns := list(batch_client.list_nodes(pool))) and ns[0].state == "starttaskfailed"
                         and ns, what="start task failed")
    info = node.start_task_info
    assert (info.state, info.exit_code, info.result, info.retry_count) == ("completed", 7, "failure", 2)
    assert info.failure_info.code == "FailureExitCode"
    assert len(attempts.read_text().splitlines()) == 3
    create_job(batch_client, job_id, pool)
    batch_client.create_task(job_id, m.BatchTaskCreateOptions(id="t", command_line="/bin/true"))
    other = f"{job_id}-x"
    create_job(batch_client, other, "pool-1x1")
    batch_client.create_task(other, m.BatchTaskCreateOptions(id="t", command_line="/bin/true"))
    wait_tasks_done(batch_client, other, 1)  # a scheduling pass has run since the task was added
    assert batch_client.get_task(job_id, "t").state == "active"
    terminate(batch_client, job_id)
    terminate(batch_client, other)


def test_start_task_without_wait_for_success_lets_tasks_run(batch_client, make_pool, job_id):
    pool = make_pool(1, 1, start_task=m.BatchStartTask(command_line="/bin/false", wait_for_success=False))
    create_job(batch_client, job_id, pool)
    batch_client.create_task(job_id, m.BatchTaskCreateOptions(id="t", command_line="/bin/true"))
    assert wait_tasks_done(batch_client, job_id, 1).succeeded == 1
    (node,) = wait_until(lambda: (ns := list(batch_client.list_nodes(pool))) and
                         ns[0].start_task_info.state == "completed" and ns, what="start task done")
    assert (node.state, node.start_task_info.result) == ("idle", "failure")
    terminate(batch_client, job_id)


def test_start_task_runs_again_after_a_reboot(batch_client, make_pool, scratch):
    runs = scratch / "runs"
    pool = make_pool(1, 1, start_task=m.BatchStartTask(command_line=bash(f"echo x >> {runs}")))
    (node,) = wait_until(lambda: (ns := list(batch_client.list_nodes(pool))) and ns[0].state == "idle" and ns,
                         what="node idle")
    batch_client.begin_reboot_node(pool, node.id, BatchNodeRebootOptions(node_reboot_kind="requeue"),
                                   polling_interval=0.1).result()
    wait_until(lambda: (n := batch_client.get_node(pool, node.id)).state == "idle"
               and n.start_task_info.state == "completed" and n.last_boot_time > node.last_boot_time,
               what="node idle after its reboot")
    assert len(runs.read_text().splitlines()) == 2
