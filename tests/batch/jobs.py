"""Small builders for the SDK models the emulator tests use."""

from __future__ import annotations

import azure.batch.models as m
from azure.batch.models._models import BatchJobTerminateOptions

from tests.waiting import wait_until

SHARED_FILE = "$AZ_BATCH_NODE_SHARED_DIR/job_prep_and_release.txt"


def bash(script: str) -> str:
    return f"/bin/bash -c '{script}'"


def create_job(client, job_id: str, pool: str, prep: str | None = None, release: str | None = None, **kwargs):
    prep_task = None
    if prep is not None:
        prep_task = m.BatchJobPreparationTask(command_line=prep, **kwargs.pop("prep_options", {}))
    release_task = m.BatchJobReleaseTask(command_line=release) if release is not None else None
    client.create_job(m.BatchJobCreateOptions(
        id=job_id, pool_info=m.BatchPoolInfo(pool_id=pool), job_preparation_task=prep_task,
        job_release_task=release_task, **kwargs))


def tasks(*pairs: tuple[str, str], **kwargs) -> list:
    return [m.BatchTaskCreateOptions(id=task_id, command_line=command, **kwargs) for task_id, command in pairs]


def wait_tasks_done(client, job_id: str, count: int, timeout: float = 30):
    return wait_until(lambda: (c := client.get_job_task_counts(job_id).task_counts).completed == count and c,
                      timeout, what=f"{count} completed tasks in {job_id}")


def wait_job_state(client, job_id: str, state: str, timeout: float = 30):
    return wait_until(lambda: (j := client.get_job(job_id)).state == state and j, timeout,
                      what=f"job {job_id} {state}")


def terminate(client, job_id: str, reason: str = "UserTerminate") -> None:
    client.begin_terminate_job(job_id, BatchJobTerminateOptions(termination_reason=reason),
                               polling_interval=0.1).result()
