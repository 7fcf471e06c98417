"""Job requests: create, update, terminate and delete, the wall-clock limit, and the prep/release status view.

State changes happen synchronously inside the request (so a GET right after a 202 sees `terminating`);
the slow part of ending a job (killing tasks, running release tasks) is the executor's, in the background.
"""

from __future__ import annotations

import asyncio
import itertools
import shutil
from datetime import timedelta

from local.batch.environment import PREP_ID, RELEASE_ID, task_rel_dir
from local.batch.errors import BatchError
from local.batch.executor import Executor
from local.batch.ids import fold
from local.batch.model import Job
from local.batch.specs import job_from_body
from local.batch.state import AccountState
from local.batch.wire import now

LIVE_JOB_STATES = ("active", "disabling", "disabled", "enabling", "terminating")

# What Batch answers when a job can no longer be terminated or take tasks.
_ENDING_ERRORS = {
    "completed": ("JobCompleted", "The specified job is already in a completed state."),
    "terminating": ("JobBeingTerminated", "The specified job is being terminated."),
    "deleting": ("JobBeingDeleted", "The specified job has been marked for deletion."),
}
ENDING_STATES = tuple(_ENDING_ERRORS)


def refuse_if_ending(job: Job, states: tuple[str, ...]) -> None:
    if job.state in states:
        code, message = _ENDING_ERRORS[job.state]
        raise BatchError(409, code, message, JobId=job.id)


class Jobs:
    def __init__(self, state: AccountState, executor: Executor):
        self.state = state
        self.executor = executor
        self._seq = itertools.count(1)

    def live_job_count(self) -> int:
        return sum(1 for job in self.state.jobs.values() if job.state in LIVE_JOB_STATES)

    def create_job(self, body: dict) -> Job:
        job = job_from_body(body)
        if job.id in self.state.jobs:
            raise BatchError(409, "JobExists", "The specified job already exists.", JobId=job.id)
        quota = self.state.config.active_job_quota
        if self.live_job_count() >= quota:
            raise BatchError(409, "ActiveJobAndScheduleQuotaReached",
                             "The specified account has reached the maximum number of active jobs and job "
                             f"schedules ({quota}).")
        job.seq = next(self._seq)
        job.start_time = job.creation_time
        self.state.jobs[job.id] = job
        self._arm_wall_clock(job)
        self.executor.check_all_complete(job)
        return job

    def get_job(self, job_id: str) -> Job:
        return self.state.job(job_id)

    def update_job(self, job_id: str, body: dict, replace: bool) -> Job:
        job = self.get_job(job_id)
        if job.state in ("completed", "terminating", "deleting"):
            raise BatchError(409, "JobCompleted" if job.state == "completed" else "JobNotActive",
                             f"The job is {job.state} and cannot be updated.", JobId=job.id)
        merged = {"id": job.id, **({} if replace else job.spec), **body}
        if replace:
            merged.setdefault("poolInfo", {"poolId": job.pool_id})
            for keep in ("jobPreparationTask", "jobReleaseTask", "commonEnvironmentSettings"):
                if keep in job.spec:
                    merged[keep] = job.spec[keep]
        updated = job_from_body(merged)
        job.spec = updated.spec
        job.priority = updated.priority
        job.on_all_tasks_complete = updated.on_all_tasks_complete
        job.max_wall_clock = updated.max_wall_clock
        job.max_task_retries = updated.max_task_retries
        if updated.pool_id != job.pool_id:
            job.pool_id = updated.pool_id
        job.touch()
        self._arm_wall_clock(job)
        if not self.state.config.missed_completion:
            self.executor.check_all_complete(job)
        self.state.wake()
        return job

    def _arm_wall_clock(self, job: Job) -> None:
        if job.wall_clock_timer:
            job.wall_clock_timer.cancel()
            job.wall_clock_timer = None
        if job.max_wall_clock is None or job.max_wall_clock >= timedelta(days=3650):
            return
        remaining = (job.creation_time + job.max_wall_clock - now()).total_seconds()
        job.wall_clock_timer = asyncio.get_running_loop().call_later(
            max(remaining, 0), self._wall_clock_expired, job.id)

    def _wall_clock_expired(self, job_id: str) -> None:
        job = self.state.jobs.get(job_id)
        if job and job.state in ("active", "disabled"):
            self.executor.end_job(job, "MaxWallClockTimeExpiry")

    def disable_job(self, job_id: str, option: str) -> None:
        """Stop scheduling the job's tasks; what happens to running ones is `disableTasks`
        (https://learn.microsoft.com/rest/api/batchservice/job/disable): requeue them, end them as failed, or
        let them finish (wait)."""
        job = self.get_job(job_id)
        if job.state != "active":
            raise BatchError(409, "JobNotActive", f"The specified job is {job.state}, not active.", JobId=job.id)
        job.set_state("disabling")
        pool = self.state.pools.get(job.pool_id)
        for node in pool.nodes.values() if pool else ():
            for task_id in [t for j, t in node.running if fold(j) == fold(job.id)]:
                task = job.tasks.get(task_id)
                # A task still waiting for its node's preparation task has not started: under `wait` it goes
                # back to the queue rather than hold its slot until the job is enabled.
                if task is not None and (option != "wait" or task.state == "preparing"):
                    self.executor.take_off(job, task, node, requeue=option != "terminate",
                                           because="its job was disabled")
        job.set_state("disabled")

    def enable_job(self, job_id: str) -> None:
        job = self.get_job(job_id)
        if job.state not in ("disabled", "disabling"):
            raise BatchError(409, "JobNotDisabled", f"The specified job is {job.state}, not disabled.", JobId=job.id)
        job.set_state("enabling")
        job.set_state("active")
        self.state.wake()

    def terminate_job(self, job_id: str, reason: str | None) -> None:
        job = self.get_job(job_id)
        refuse_if_ending(job, ENDING_STATES)
        self.executor.end_job(job, reason or "UserTerminate")

    def delete_job(self, job_id: str) -> None:
        job = self.get_job(job_id)
        refuse_if_ending(job, ("deleting",))
        was_live = job.state != "completed"
        if was_live and job.finishing is None:
            self.executor.end_job(job, job.terminate_reason or "UserTerminate", then_state="deleting")
        job.set_state("deleting")
        self.state.spawn(self._remove_job(job))

    async def _remove_job(self, job: Job) -> None:
        if job.finishing is not None:
            await asyncio.shield(job.finishing)
        if job.wall_clock_timer:
            job.wall_clock_timer.cancel()
        pool = self.state.pools.get(job.pool_id)
        for rec in job.nodes.values():
            node = pool.nodes.get(rec.node_id) if pool else None
            if node:
                await asyncio.to_thread(shutil.rmtree, node.root / "workitems" / job.id, True)
        # Gone from the API only once its files are gone from the nodes, as a client polling for the
        # delete would expect.
        self.state.jobs.pop(job.id, None)

    def prep_release_status(self, job: Job) -> list[dict]:
        if job.prep_spec is None:
            raise BatchError(409, "JobPreparationTaskNotSpecified",
                             "The specified job does not have a job preparation task.", JobId=job.id)
        out = []
        for rec in job.nodes.values():
            if rec.prep_state is None:
                continue
            node_url = f"{self.state.base_url}/pools/{rec.pool_id}/nodes/{rec.node_id}"
            prep_rel = task_rel_dir(job.id, job.prep_spec.get("id", PREP_ID))
            item = {"poolId": rec.pool_id, "nodeId": rec.node_id, "nodeUrl": node_url,
                    "jobPreparationTaskExecutionInfo": {
                        **rec.prep.wire(), "state": rec.prep_state,
                        "taskRootDirectory": prep_rel, "taskRootDirectoryUrl": f"{node_url}/files/{prep_rel}"}}
            if rec.prep_state == "running":
                item["jobPreparationTaskExecutionInfo"].pop("result", None)
            if rec.release is not None and job.release_spec is not None:
                rel_rel = task_rel_dir(job.id, job.release_spec.get("id", RELEASE_ID))
                info = rec.release.wire(include_retry=False)
                info.update({"state": rec.release_state, "taskRootDirectory": rel_rel,
                             "taskRootDirectoryUrl": f"{node_url}/files/{rel_rel}"})
                item["jobReleaseTaskExecutionInfo"] = info
            out.append(item)
        return out
