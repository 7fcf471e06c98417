"""A run's directory is deleted on its node once its retention time after the run's end has passed
(constraints.retentionTime, default 7 days: https://learn.microsoft.com/rest/api/batchservice/task/add#taskconstraints),
and a deleted task's directory goes at once (https://learn.microsoft.com/rest/api/batchservice/task/delete)."""

from __future__ import annotations

from pathlib import Path

import azure.batch.models as m
import pytest
from azure.core.exceptions import ResourceNotFoundError

from tests.batch.jobs import bash, create_job, terminate, wait_job_state, wait_tasks_done
from tests.waiting import wait_until

SHORT = "PT1S"


def where(scratch: Path, name: str) -> str:
    """A command that records the run's own directory in scratch/name."""
    return f"echo $AZ_BATCH_TASK_DIR > {scratch}/{name}"


def test_a_task_directory_goes_when_its_retention_time_passes(batch_client, job_id, make_pool, scratch):
    pool = make_pool(1, 2)
    create_job(batch_client, job_id, pool)
    batch_client.create_tasks(job_id, [
        m.BatchTaskCreateOptions(id="short", command_line=bash(f"{where(scratch, 'short')}; echo out"),
                                 constraints=m.BatchTaskConstraints(retention_time=SHORT)),
        m.BatchTaskCreateOptions(id="kept", command_line=bash(f"{where(scratch, 'kept')}; echo out")),
    ])
    wait_tasks_done(batch_client, job_id, 2)
    short, kept = (Path((scratch / name).read_text().strip()) for name in ("short", "kept"))
    wait_until(lambda: not short.exists(), what="the short-retention task's directory deleted")
    assert [f.name for f in batch_client.list_task_files(job_id, "short")] == []
    with pytest.raises(ResourceNotFoundError) as gone:
        b"".join(batch_client.download_task_file(job_id, "short", "stdout.txt"))
    response = gone.value.response
    response.read()  # a download streams, so the SDK leaves the error body unread
    assert (response.status_code, response.json()["code"]) == (404, "FileNotFound")
    assert (kept / "stdout.txt").read_text() == "out\n"
    assert b"".join(batch_client.download_task_file(job_id, "kept", "stdout.txt")) == b"out\n"
    assert batch_client.get_task(job_id, "kept").constraints.retention_time.days == 7
    terminate(batch_client, job_id)


def test_prep_and_release_directories_go_when_their_retention_time_passes(batch_client, job_id, make_pool,
                                                                          scratch):
    pool = make_pool(1, 1)
    batch_client.create_job(m.BatchJobCreateOptions(
        id=job_id, pool_info=m.BatchPoolInfo(pool_id=pool),
        job_preparation_task=m.BatchJobPreparationTask(
            command_line=bash(where(scratch, "prep")), constraints=m.BatchTaskConstraints(retention_time=SHORT)),
        job_release_task=m.BatchJobReleaseTask(command_line=bash(where(scratch, "release")),
                                               retention_time=SHORT)))
    batch_client.create_tasks(job_id, [m.BatchTaskCreateOptions(id="t", command_line="/bin/true")])
    wait_tasks_done(batch_client, job_id, 1)
    prep = Path((scratch / "prep").read_text().strip())
    wait_until(lambda: not prep.exists(), what="the prep task's directory deleted")
    terminate(batch_client, job_id)
    wait_job_state(batch_client, job_id, "completed")
    release = Path((scratch / "release").read_text().strip())
    wait_until(lambda: not release.exists(), what="the release task's directory deleted")
    assert (prep.parent / "t").is_dir(), "the task's own directory keeps its default 7 days"


def test_deleting_a_task_or_its_job_deletes_their_directories(batch_client, job_id, make_pool, scratch):
    pool = make_pool(1, 1)
    create_job(batch_client, job_id, pool)
    batch_client.create_tasks(job_id, [m.BatchTaskCreateOptions(id=name, command_line=bash(where(scratch, name)))
                                       for name in ("a", "b")])
    wait_tasks_done(batch_client, job_id, 2)
    a, b = (Path((scratch / name).read_text().strip()) for name in ("a", "b"))
    batch_client.delete_task(job_id, "a")
    wait_until(lambda: not a.exists(), what="the deleted task's directory gone")
    assert b.is_dir()
    batch_client.begin_delete_job(job_id, polling_interval=0.1).result()
    wait_until(lambda: not b.parent.parent.exists(), what="the deleted job's directories gone")
