"""Azure's "job preparation and release tasks" walk-through, through the real azure-batch SDK."""

from __future__ import annotations

import azure.batch.models as m
import pytest
from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError

from tests.batch.jobs import SHARED_FILE, bash, create_job, tasks, terminate, wait_tasks_done

POOL = "pool-2x1"


def read_node_file(client, node_id: str, path: str) -> str:
    return b"".join(client.download_node_file(POOL, node_id, path)).decode()


def test_prep_tasks_and_release_across_two_nodes(batch_client, job_id):
    create_job(batch_client, job_id, POOL,
               prep=bash(f"echo $AZ_BATCH_NODE_ID > {SHARED_FILE}"),
               release=bash(f"rm {SHARED_FILE}"))
    batch_client.create_tasks(job_id, tasks(*[(f"task{i}", bash(f"echo $AZ_BATCH_TASK_ID >> {SHARED_FILE}"))
                                             for i in range(1, 9)]))
    counts = wait_tasks_done(batch_client, job_id, 8)
    assert (counts.succeeded, counts.failed) == (8, 0)

    nodes = [n.id for n in batch_client.list_nodes(POOL)]
    assert len(nodes) == 2
    seen: list[str] = []
    for node_id in nodes:
        lines = read_node_file(batch_client, node_id, "shared/job_prep_and_release.txt").split()
        assert lines[0] == node_id, "the prep task wrote the node id first"
        seen += lines[1:]
        props = batch_client.get_node_file_properties(POOL, node_id, "shared/job_prep_and_release.txt")
        assert (props.content_length, props.is_directory) == (len("\n".join(lines)) + 1, False)
    assert sorted(seen) == [f"task{i}" for i in range(1, 9)], "each task ran exactly once across the nodes"
    ran_on = {t.id: t.node_info.node_id for t in batch_client.list_tasks(job_id)}
    assert set(ran_on.values()) == set(nodes), "spread placement used both nodes"

    terminate(batch_client, job_id)
    job = batch_client.get_job(job_id)
    assert job.state == m.BatchJobState.COMPLETED
    assert job.execution_info.termination_reason == "UserTerminate"

    statuses = list(batch_client.list_job_preparation_and_release_task_status(job_id))
    assert sorted(s.node_id for s in statuses) == sorted(nodes)
    for status in statuses:
        prep, release = status.job_preparation_task_execution_info, status.job_release_task_execution_info
        assert (prep.state, prep.exit_code, prep.result) == ("completed", 0, "success")
        assert (release.state, release.exit_code) == ("completed", 0)
        with pytest.raises(ResourceNotFoundError):  # the release task deleted the file
            read_node_file(batch_client, status.node_id, "shared/job_prep_and_release.txt")

    with pytest.raises(ResourceExistsError) as refused:
        batch_client.create_task(job_id, m.BatchTaskCreateOptions(id="late", command_line="/bin/true"))
    assert refused.value.error.code == "JobCompleted"
