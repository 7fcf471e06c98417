"""Task requests within a job: add (one or a collection), get, terminate and delete.

Adding only queues the task; the scheduler places it on its next pass, so a collection of 100 tasks
costs one pass rather than a hundred.
"""

from __future__ import annotations

import asyncio
import shutil

from local.batch import dependencies, process
from local.batch.bookkeeping import count, unplace
from local.batch.environment import PREP_ID, RELEASE_ID, task_rel_dir
from local.batch.errors import BatchError, invalid_property, lookup
from local.batch.executor import Executor
from local.batch.ids import fold
from local.batch.jobs import ENDING_STATES, refuse_if_ending
from local.batch.model import Execution, Job, Task
from local.batch.specs import task_from_body
from local.batch.state import AccountState
from local.batch.wire import fmt_time, optional, parse_duration


class Tasks:
    def __init__(self, state: AccountState, executor: Executor):
        self.state = state
        self.executor = executor

    def add_task(self, job_id: str, body: dict) -> Task:
        job = self.state.job(job_id)
        refuse_if_ending(job, ENDING_STATES)
        task = self._new_task(job, body)
        self._enqueue(job, task)
        return task

    def add_tasks(self, job_id: str, bodies: list) -> list[dict]:
        job = self.state.job(job_id)
        refuse_if_ending(job, ENDING_STATES)
        base_url = self.state.base_url
        results = []
        for body in bodies:
            task_id = body.get("id") if isinstance(body, dict) else None
            try:
                if not isinstance(body, dict):
                    raise invalid_property("value", body, "each task must be an object")
                task = self._new_task(job, body)
            except BatchError as err:
                results.append({"status": "clienterror", "taskId": task_id,
                                "error": err.body(base_url)})
                continue
            self._enqueue(job, task)
            results.append({"status": "success", "taskId": task.id, "eTag": task.etag,
                            "lastModified": fmt_time(task.last_modified),
                            "location": f"{base_url}/jobs/{job.id}/tasks/{task.id}"})
        return results

    @staticmethod
    def _new_task(job: Job, body: dict) -> Task:
        task = task_from_body(body, job)
        prep_id = (job.prep_spec or {}).get("id", PREP_ID)
        release_id = (job.release_spec or {}).get("id", RELEASE_ID)
        if job.prep_spec is not None and fold(task.id) == fold(prep_id):
            raise BatchError(409, "TaskIdSameAsJobPreparationTask",
                             "The task id is the same as the job preparation task's id.", TaskId=task.id)
        if job.release_spec is not None and fold(task.id) == fold(release_id):
            raise BatchError(409, "TaskIdSameAsJobReleaseTask",
                             "The task id is the same as the job release task's id.", TaskId=task.id)
        if task.id in job.tasks:
            raise BatchError(409, "TaskExists", "The specified task already exists.", TaskId=task.id)
        task.waiting_on = dependencies.parents_of(task.spec, job)
        return task

    def _enqueue(self, job: Job, task: Task) -> None:
        job.task_seq += 1
        task.seq = job.task_seq
        job.tasks[task.id] = task
        count(job, task, +1)
        if task.waiting_on is not None and dependencies.register(job, task, task.waiting_on):
            return  # blocked: it joins the queue when its last parent satisfies it
        job.pending.append(task.id)
        self.state.wake()

    def get_task(self, job_id: str, task_id: str) -> Task:
        return lookup(self.state.job(job_id).tasks, task_id, "Task")

    def terminate_task(self, job_id: str, task_id: str) -> None:
        job = self.state.job(job_id)
        task = self.get_task(job_id, task_id)
        if task.state == "completed":
            raise BatchError(409, "TaskCompleted", "The specified task is already completed.", TaskId=task_id)
        task.user_terminated = True
        if self.executor.kill_task(job, task, "terminated by the user"):
            return  # its run completes it when the process exits
        node = self.state.node_of(job, task.node_id) if task.node_id else None
        if node:
            unplace(job, task, node)
        self.executor.complete_task(job, task, None, process.failure("TaskEnded", "The task was terminated by the user."))

    def reactivate_task(self, job_id: str, task_id: str) -> None:
        """A failed task runs again with its retries reset
        (https://learn.microsoft.com/rest/api/batchservice/task/reactivate)."""
        job = self.state.job(job_id)
        refuse_if_ending(job, ENDING_STATES)
        task = self.get_task(job_id, task_id)
        if task.state != "completed" or task.execution.failure is None:
            raise BatchError(409, "TaskNotFailed", "Only a task that completed with a failure can be reactivated.",
                             TaskId=task.id)
        count(job, task, -1)
        task.execution = Execution()
        task.user_terminated = task.satisfies = False
        task.set_state("active")
        count(job, task, +1)
        if not task.waiting_on:
            job.pending.append(task.id)
        self.state.wake()

    def update_task(self, job_id: str, task_id: str, body: dict) -> Task:
        """PUT a task: its constraints are all that Batch lets change."""
        job = self.state.job(job_id)
        task = self.get_task(job_id, task_id)
        constraints = body.get("constraints") or {}
        if not isinstance(constraints, dict):
            raise invalid_property("constraints", constraints, "expected an object")
        if "maxWallClockTime" in constraints:
            task.max_wall_clock = parse_duration("constraints.maxWallClockTime", constraints["maxWallClockTime"])
        if "maxTaskRetryCount" in constraints:
            task.max_retries = optional(constraints, "maxTaskRetryCount", int, job.max_task_retries)
            if task.max_retries < -1:
                raise invalid_property("constraints.maxTaskRetryCount", task.max_retries, "must be -1 or more")
        task.spec["constraints"] = {**(task.spec.get("constraints") or {}), **constraints}
        task.touch()
        return task

    def delete_task(self, job_id: str, task_id: str) -> None:
        job = self.state.job(job_id)
        task = self.get_task(job_id, task_id)
        self.executor.kill_task(job, task, "deleted")
        node = self.state.node_of(job, task.node_id) if task.node_id else None
        if node and task.run_token is not None:
            unplace(job, task, node)
        count(job, task, -1)
        del job.tasks[task.id]
        if node is not None:
            # "When a Task is deleted, all of the files in its directory on the Compute Node where it ran are also
            # deleted (regardless of the retention time)": https://learn.microsoft.com/rest/api/batchservice/task/delete
            self.state.spawn(asyncio.to_thread(shutil.rmtree, node.root / task_rel_dir(job.id, task.id), True))
        self.executor.check_all_complete(job)
        self.state.wake()

    def task_wire(self, job: Job, task: Task) -> dict:
        rel = task_rel_dir(job.id, task.id) if task.node_id else None
        return task.wire(self.state.base_url, rel)
