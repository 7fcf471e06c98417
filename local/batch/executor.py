"""Running work on nodes through their agents, and how runs end: completion, retries, job wind-down.

Processes are awaited by coroutines that re-check the task's placement token (and the node's reboot
generation) when they resume, because a reboot or a terminate may have moved on since. Ending a job
lives here rather than with the job requests because a task's completion can end its job
(onAllTasksComplete), so this module must not depend on jobs.py, pools.py or scheduler.py.
"""

from __future__ import annotations

import asyncio
import logging
import os
from datetime import timedelta
from pathlib import Path

from local.batch import dependencies, process, transfer
from local.batch.bookkeeping import count, set_task_state, unplace
from local.batch.environment import task_env, task_rel_dir
from local.batch.model import Job, Node, Task
from local.batch.preparation import PrepAndRelease
from local.batch.retention import retention_of
from local.batch.state import AccountState, log_crash
from local.batch.wire import now

log = logging.getLogger("local.batch")



class Executor(PrepAndRelease):
    def __init__(self, state: AccountState):
        self.state = state
        # Keyed (job id, task id or "#prep"/"#release", node id), so kills can pick by job, task or node.
        self._procs: dict[tuple, process.Running] = {}
        self._runs: dict[tuple[str, str], asyncio.Task] = {}

    # ----- killing ---------------------------------------------------------------------------------

    def kill_all(self, because: str) -> None:
        for running in list(self._procs.values()):
            running.kill(because)

    def kill_on_node(self, node_id: str, because: str) -> None:
        for key, running in list(self._procs.items()):
            if key[-1] == node_id:
                running.kill(because)

    def kill_job(self, job_id: str, because: str) -> None:
        for key, running in list(self._procs.items()):
            if key[0] == job_id:
                running.kill(because)

    def kill_task(self, job: Job, task: Task, because: str) -> bool:
        """Kill the task's process if it has one; False if it is not running."""
        running = self._procs.get((job.id, task.id, task.node_id))
        if running:
            running.kill(because)
        return running is not None

    def track(self, key: tuple, running: process.Running) -> None:
        """A run started elsewhere (a pool's start task) that kills by node must reach too."""
        self._procs[key] = running

    def untrack(self, key: tuple, running: process.Running) -> None:
        if self._procs.get(key) is running:
            del self._procs[key]

    def in_flight(self) -> list[asyncio.Task]:
        return list(self._runs.values())

    # ----- running --------------------------------------------------------------------------------

    def start_run(self, job: Job, task: Task, node: Node, token: object) -> None:
        set_task_state(job, task, "running")
        rec = job.nodes.get(node.id)
        if rec:
            rec.ran_tasks = True
        run = asyncio.create_task(self._run_task(job, task, node, token))
        key = (job.id, task.id)
        self._runs[key] = run
        run.add_done_callback(lambda _t: self._forget_run(key, run))
        run.add_done_callback(log_crash)

    def _forget_run(self, key: tuple[str, str], run: asyncio.Task) -> None:
        if self._runs.get(key) is run:
            del self._runs[key]

    async def _execute(self, job: Job, node: Node, task_id: str, spec: dict, timeout: timedelta | None,
                       key: tuple, live=lambda: True) -> tuple[process.Outcome, Path, object]:
        """Run one task-like command on a node, through the node's agent; also who it ran as (None when it
        failed before that was known)."""
        task_dir = f"{node.root}/{task_rel_dir(job.id, task_id)}"
        wd = f"{task_dir}/wd"
        if spec.get("resourceFiles"):
            # Files land in the working directory before the command starts, so it must exist first; one that an
            # earlier run swapped for a link is not followed (the emulator writes as root).
            if os.path.islink(wd):
                os.unlink(wd)
            await asyncio.to_thread(os.makedirs, wd, exist_ok=True)
            try:
                await transfer.download_resource_files(spec["resourceFiles"], Path(wd))
            except transfer.TransferError as err:
                return process.Outcome(None, err.info), Path(wd), None
        pool = self.state.pools.get(node.pool_id)
        who = self._who(node, spec)
        if isinstance(who, dict):
            return process.Outcome(None, who), Path(wd), who
        env = task_env(job, node, task_id, task_dir, wd, spec.get("environmentSettings"))
        refs = [*((pool.spec if pool else {}).get("applicationPackageReferences") or []),
                *(spec.get("applicationPackageReferences") or [])]
        if refs:
            packages = await self.state.packages.environment(node, refs)
            if "code" in packages:  # a failureInfo: the task fails before it starts, as Batch's pre-processing
                return process.Outcome(None, packages), Path(wd), who
            env.update(packages)
        seconds = None if timeout is None or timeout >= timedelta(days=3650) else timeout.total_seconds()
        started = await node.agent.start_command(spec["commandLine"], wd, env, [task_dir, wd],
                                                 f"{task_dir}/stdout.txt", f"{task_dir}/stderr.txt", who.uid,
                                                 who.gid, own_tree=bool(spec.get("resourceFiles")))
        self._procs[key] = started
        if not live():  # ended (terminate, reboot) while the agent was starting
            started.kill("ended before it started")
        try:
            outcome = await process.wait(started, seconds)
        finally:
            self._procs.pop(key, None)
        return outcome, Path(wd), who

    def _who(self, node: Node, spec: dict):
        pool = self.state.pools.get(node.pool_id)
        return self.state.identities.run_as(spec.get("userIdentity"), (pool.spec if pool else {}).get(
            "userAccounts") or [], node.pool_id)

    async def _run_task(self, job: Job, task: Task, node: Node, token: object) -> None:
        generation = node.generation
        task.execution.start_time = now()
        task.execution.end_time = None
        task.execution.exit_code = None
        task.execution.failure = None
        outcome, wd, who = await self._execute(
            job, node, task.id, task.spec, task.max_wall_clock, (job.id, task.id, node.id),
            live=lambda: (job.state == "active" and task.run_token is token and node.generation == generation
                          and not task.user_terminated))
        if task.run_token is not token or node.generation != generation:
            return  # a reboot or delete took the task away while it ran
        if who is None:
            who = self._who(node, task.spec)
        problems = await transfer.upload_output_files(task.spec.get("outputFiles") or [], wd,
                                                      failed=outcome.failure is not None,
                                                      reader=None if isinstance(who, dict) else who.uid_gid)
        if task.run_token is not token:
            return
        failure = outcome.failure
        if problems and failure is None:
            failure = process.failure("FileUploadFailed", "; ".join(problems)[:1024])
        unplace(job, task, node)
        node.total_run += 1
        if failure is None:
            node.total_succeeded += 1
        node.recent = (node.recent + [{"taskUrl": f"{self.state.base_url}/jobs/{job.id}/tasks/{task.id}",
                                       "jobId": job.id, "taskId": task.id, "taskState": "completed",
                                       "executionInfo": {"exitCode": outcome.exit_code}}])[-10:]
        retries = task.max_retries
        if (failure is not None and job.state == "active" and not task.user_terminated
                and (retries < 0 or task.execution.retry_count < retries)):
            task.execution.retry_count += 1
            task.execution.last_retry_time = now()
            task.execution.exit_code = outcome.exit_code
            set_task_state(job, task, "active")
            job.pending.appendleft(task.id)
            self.state.wake()
            return
        self.complete_task(job, task, outcome.exit_code, failure)

    def take_off(self, job: Job, task: Task, node: Node, requeue: bool, because: str) -> None:
        """Take a placed task off its node now (a reboot, a disable): back to the queue, or ended as failed."""
        self.kill_task(job, task, because)
        unplace(job, task, node)
        if requeue:
            task.execution.requeue_count += 1
            task.execution.last_requeue_time = now()
            set_task_state(job, task, "active")
            job.pending.appendleft(task.id)
        else:
            self.complete_task(job, task, None, process.failure("TaskEnded", f"The task was ended because {because}."))

    def complete_task(self, job: Job, task: Task, exit_code: int | None, failure: dict | None) -> None:
        count(job, task, -1)
        task.execution.end_time = now()
        task.execution.exit_code = exit_code
        task.execution.failure = failure
        task.set_state("completed")
        count(job, task, +1)
        if task.node_id is not None:
            self.state.retention.keep(task.execution.end_time, retention_of(
                "constraints.retentionTime", (task.spec.get("constraints") or {}).get("retentionTime")),
                job.id, task.id, task.node_id)
        for dependant in dependencies.completed(job, task):
            job.pending.append(dependant.id)
        self.check_all_complete(job)
        self.state.wake()

    def check_all_complete(self, job: Job) -> None:
        if (job.state == "active" and job.on_all_tasks_complete == "terminatejob"
                and job.counts["active"] == 0 and job.counts["running"] == 0):
            self.end_job(job, "AllTasksComplete")

    def end_job(self, job: Job, reason: str, then_state: str = "terminating") -> None:
        """Batch's terminate: kill running tasks, stop placing new ones, run release where prep ran."""
        job.set_state(then_state)
        job.terminate_reason = reason
        if job.wall_clock_timer:
            job.wall_clock_timer.cancel()
            job.wall_clock_timer = None
        job.finishing = self.state.spawn(self._finish_job(job))

    async def _finish_job(self, job: Job) -> None:
        self.kill_job(job.id, "job terminated")
        for rec in job.nodes.values():
            # A copy: unplace removes the task from rec.waiting.
            for task_id in list(rec.waiting):
                task = job.tasks.get(task_id)
                node = self.state.node_of(job, rec.node_id)
                if task and node:
                    unplace(job, task, node)
                    set_task_state(job, task, "active")
            rec.waiting.clear()
        runs = [t for (jid, _), t in list(self._runs.items()) if jid == job.id]
        await asyncio.gather(*runs, return_exceptions=True)
        if job.release_spec is not None:
            # Release runs where the job ran: prep succeeded (or tasks ran beside it) and no reboot voided it.
            releases = [self._run_release(job, rec) for rec in job.nodes.values()
                        if rec.prep_state == "completed" and not rec.prep_needed
                        and (rec.prep_succeeded or rec.ran_tasks) and self.state.node_of(job, rec.node_id)]
            await asyncio.gather(*releases, return_exceptions=True)
        job.end_time = now()
        if job.state != "deleting":
            job.set_state("completed")
        log.info("job completed", extra={"job": job.id, "reason": job.terminate_reason})
