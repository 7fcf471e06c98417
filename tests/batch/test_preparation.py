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
