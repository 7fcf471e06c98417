"""The job preparation task runs once per node per job, whatever the node's slot count, and again after a reboot
unless the job asks it not to (jobPreparationTask.rerunOnNodeRebootAfterSuccess:
https://learn.microsoft.com/azure/batch/batch-job-prep-release)."""

from __future__ import annotations

import pytest
from azure.batch.models._models import BatchNodeRebootOptions

from tests.batch.jobs import bash, create_job, tasks, terminate, wait_tasks_done
from tests.waiting import wait_until


@pytest.mark.parametrize("slots", [2, 4])
def test_prep_runs_once_per_node_whatever_the_slot_count(batch_client, job_id, make_pool, scratch, slots):
    pool = make_pool(1, slots)
    runs = scratch / "preps"
    create_job(batch_client, job_id, pool, prep=bash(f"echo $AZ_BATCH_NODE_ID >> {runs}"), release="/bin/true")
    # One collection: every task is placed in the same scheduling pass, filling every slot of the node at once.
    batch_client.create_tasks(job_id, tasks(*[(f"t{i}", "/bin/true") for i in range(slots * 2)]))
    counts = wait_tasks_done(batch_client, job_id, slots * 2)
    assert counts.succeeded == slots * 2
    assert len(runs.read_text().splitlines()) == 1
    terminate(batch_client, job_id)


@pytest.mark.parametrize(("rerun", "expected"), [(True, 2), (False, 1)])
def test_prep_runs_again_after_a_reboot_unless_told_not_to(batch_client, job_id, make_pool, scratch, rerun,
                                                           expected):
    pool = make_pool(1, 2)
    runs = scratch / "preps"
    create_job(batch_client, job_id, pool, prep=bash(f"echo p >> {runs}"), release="/bin/true",
               prep_options={"rerun_on_node_reboot_after_success": rerun})
    batch_client.create_tasks(job_id, tasks(("a", "/bin/true"), ("b", "/bin/true")))
    wait_tasks_done(batch_client, job_id, 2)
    (node,) = batch_client.list_nodes(pool)
    batch_client.begin_reboot_node(pool, node.id, BatchNodeRebootOptions(node_reboot_kind="requeue"),
                                   polling_interval=0.1).result()
    wait_until(lambda: batch_client.get_node(pool, node.id).state == "idle", what="node back from its reboot")
    batch_client.create_tasks(job_id, tasks(("c", "/bin/true"), ("d", "/bin/true")))
    counts = wait_tasks_done(batch_client, job_id, 4)
    assert counts.succeeded == 4
    assert len(runs.read_text().splitlines()) == expected
    terminate(batch_client, job_id)


def test_without_wait_for_success_tasks_run_beside_prep_and_after_it_fails(batch_client, job_id, make_pool, scratch):
    pool = make_pool(1, 1)
    gate = scratch / "gate"
    create_job(batch_client, job_id, pool, prep=bash(f"while [ ! -e {gate} ]; do sleep 0.05; done; exit 3"),
               prep_options={"wait_for_success": False})
    batch_client.create_tasks(job_id, tasks(("beside", "/bin/true")))
    wait_tasks_done(batch_client, job_id, 1)
    (status,) = batch_client.list_job_preparation_and_release_task_status(job_id)
    assert status.job_preparation_task_execution_info.state == "running"
    gate.touch()
    wait_until(lambda: next(iter(batch_client.list_job_preparation_and_release_task_status(job_id)))
               .job_preparation_task_execution_info.state == "completed", what="the prep task failed")
    (status,) = batch_client.list_job_preparation_and_release_task_status(job_id)
    assert status.job_preparation_task_execution_info.exit_code == 3
    batch_client.create_tasks(job_id, tasks(("after", "/bin/true")))
    counts = wait_tasks_done(batch_client, job_id, 2)
    assert counts.succeeded == 2
    assert batch_client.get_task(job_id, "after").node_info.node_id == status.node_id
    terminate(batch_client, job_id)
