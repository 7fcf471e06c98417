"""The emulated account: pools of simulated nodes, jobs and tasks, and how Batch schedules and ends them.

Everything runs on one event loop. State changes happen synchronously inside request handlers (so a
GET right after a 202 sees `terminating`), and processes are awaited by coroutines that re-check the
task's placement token when they resume, because a reboot or a terminate may have moved on since.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import logging
import os
import shutil
from datetime import timedelta
from pathlib import Path

from local.batch import process, transfer
from local.batch.config import EmulatorConfig
from local.batch.errors import BatchError, invalid_property, not_found
from local.batch.model import Execution, Job, Node, NodeJobRecord, Pool, Task
from local.batch.specs import job_from_body, pool_from_body, task_from_body
from local.batch.wire import fmt_time, now, parse_duration

log = logging.getLogger("local.batch")

PREP_ID = "jobpreparation"
RELEASE_ID = "jobrelease"
RELEASE_LIMIT = timedelta(minutes=15)
LIVE_JOB_STATES = ("active", "disabling", "disabled", "enabling", "terminating")
# Environment a node starts with; the emulator's own variables (keys, tokens) are not passed on.
BASE_ENV_KEYS = ("PATH", "LANG", "LC_ALL", "TZ", "TMPDIR", "PYTHONPATH", "SYSTEMROOT")


def task_rel_dir(job_id: str, task_id: str) -> str:
    """A task's directory, relative to its node's root, as Batch lays it out."""
    return f"workitems/{job_id}/job-1/{task_id}"


def node_id_for(pool_id: str, index: int) -> str:
    digest = hashlib.sha256(pool_id.encode()).hexdigest()[:10]
    return f"tvmps_{digest}{index:04d}_d"


class Account:
    def __init__(self, config: EmulatorConfig, base_url: str):
        self.config = config
        self.base_url = base_url
        self.pools: dict[str, Pool] = {}
        self.jobs: dict[str, Job] = {}
        self.workspace = Path(config.workspace).resolve()
        self._seq = itertools.count(1)
        self._wake = asyncio.Event()
        self._procs: dict[tuple, process.Running] = {}
        self._runs: dict[tuple[str, str], asyncio.Task] = {}
        self._background: set[asyncio.Task] = set()
        self._dispatcher: asyncio.Task | None = None

    # ----- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        self.workspace.mkdir(parents=True, exist_ok=True)
        for spec in self.config.pools:
            self.create_pool({"id": spec.pool_id, "vmSize": "standard_d2s_v3",
                              "targetDedicatedNodes": spec.nodes, "taskSlotsPerNode": spec.slots_per_node})
        self._dispatcher = asyncio.create_task(self._dispatch_loop())

    async def close(self) -> None:
        for running in list(self._procs.values()):
            running.kill("emulator stopping")
        tasks = [t for t in (self._dispatcher, *self._background, *self._runs.values()) if t]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.gather(*(node.agent.close() for pool in self.pools.values() for node in pool.nodes.values()),
                             return_exceptions=True)

    def _spawn(self, coro) -> asyncio.Task:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        task.add_done_callback(_log_crash)
        return task

    def wake(self) -> None:
        self._wake.set()

    # ----- pools and nodes -------------------------------------------------------------------------

    def create_pool(self, body: dict) -> Pool:
        pool = pool_from_body(body)
        if pool.id in self.pools:
            raise BatchError(409, "PoolExists", "The specified pool already exists.", PoolId=pool.id)
        for index in range(pool.target_nodes):
            node_id = node_id_for(pool.id, index)
            root = self.workspace / "pools" / pool.id / "nodes" / node_id
            for sub in ("shared", "startup", "workitems", "applications", "fsmounts"):
                (root / sub).mkdir(parents=True, exist_ok=True)
            node = pool.nodes[node_id] = Node(id=node_id, pool_id=pool.id, root=root, slots=pool.slots_per_node,
                                              state="idle", agent=process.NodeAgent(node_id))
            node.env = self._node_env(node)
            node.agent.boot()
        self.pools[pool.id] = pool
        log.info("pool created", extra={"pool": pool.id, "nodes": pool.target_nodes})
        self.wake()
        return pool

    def get_pool(self, pool_id: str) -> Pool:
        pool = self.pools.get(pool_id)
        if pool is None:
            raise not_found("Pool", pool_id)
        return pool

    def get_node(self, pool_id: str, node_id: str) -> Node:
        node = self.get_pool(pool_id).nodes.get(node_id)
        if node is None:
            raise not_found("Node", node_id)
        return node

    def delete_pool(self, pool_id: str) -> None:
        pool = self.get_pool(pool_id)
        if pool.state == "deleting":
            raise BatchError(409, "PoolBeingDeleted", "The specified pool has been marked for deletion.")
        pool.set_state("deleting")
        for node in pool.nodes.values():
            self._evict_node(node, requeue=True)
        self._spawn(self._remove_pool(pool))

    async def _remove_pool(self, pool: Pool) -> None:
        await asyncio.sleep(0)
        # Agents first: while the pool is still listed, close() would find them if this is cancelled.
        await asyncio.gather(*(node.agent.close() for node in pool.nodes.values()), return_exceptions=True)
        self.pools.pop(pool.id, None)
        await asyncio.to_thread(shutil.rmtree, self.workspace / "pools" / pool.id, True)

    def reboot_node(self, pool_id: str, node_id: str, option: str = "requeue") -> None:
        """Kill the node's running tasks and void its preparation runs.

        `requeue` puts the tasks back in the queue; `terminate` ends them as failed (Batch's other options,
        taskcompletion and retaineddata, are treated as requeue since the emulator reboots at once).
        """
        node = self.get_node(pool_id, node_id)
        if node.state == "rebooting":
            raise BatchError(409, "NodeBeingRebooted", "The node is already rebooting.")
        node.set_state("rebooting")
        self._evict_node(node, requeue=option != "terminate")
        for job in self.jobs.values():
            rec = job.nodes.get(node.id)
            if rec:
                rec.prep_needed = True
        self._spawn(self._finish_reboot(node))

    async def _finish_reboot(self, node: Node) -> None:
        await asyncio.sleep(self.config.reboot_seconds)
        node.boot_time = now()
        node.set_state("running" if node.running else "idle")
        self.wake()

    def _evict_node(self, node: Node, requeue: bool) -> None:
        node.generation += 1
        for key, running in list(self._procs.items()):
            if key[-1] == node.id:
                running.kill("node rebooted")
        for job_id, task_id in list(node.running):
            job = self.jobs.get(job_id)
            task = job.tasks.get(task_id) if job else None
            if job and task:
                self._unplace(job, task, node)
                if requeue and job.state == "active":
                    task.execution.requeue_count += 1
                    task.execution.last_requeue_time = now()
                    self._set_task_state(job, task, "active")
                    job.pending.appendleft(task.id)
                else:
                    self._complete_task(job, task, None, process.failure(
                        "TaskEnded", "The task was ended because its node rebooted."))
        for job in self.jobs.values():
            rec = job.nodes.get(node.id)
            if rec and rec.prep_state == "running":
                rec.prep_state = "completed"
                rec.prep.end_time = now()
                rec.prep.failure = process.failure("NodeRebooted", "The node rebooted while the task ran.")
                rec.prep_needed = True
        self.wake()

    # ----- jobs -----------------------------------------------------------------------------------

    def live_job_count(self) -> int:
        return sum(1 for job in self.jobs.values() if job.state in LIVE_JOB_STATES)

    def create_job(self, body: dict) -> Job:
        job = job_from_body(body)
        if job.id in self.jobs:
            raise BatchError(409, "JobExists", "The specified job already exists.", JobId=job.id)
        if self.live_job_count() >= self.config.active_job_quota:
            raise BatchError(409, "ActiveJobAndScheduleQuotaReached",
                             "The specified account has reached the maximum number of active jobs and job "
                             f"schedules ({self.config.active_job_quota}).")
        job.seq = next(self._seq)
        job.start_time = job.creation_time
        self.jobs[job.id] = job
        self._arm_wall_clock(job)
        self._check_all_complete(job)
        return job

    def get_job(self, job_id: str) -> Job:
        job = self.jobs.get(job_id)
        if job is None:
            raise not_found("Job", job_id)
        return job

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
        self._check_all_complete(job)
        self.wake()
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
        job = self.jobs.get(job_id)
        if job and job.state in ("active", "disabled"):
            self._end_job(job, "MaxWallClockTimeExpiry")

    def terminate_job(self, job_id: str, reason: str | None) -> None:
        job = self.get_job(job_id)
        _refuse_if_ending(job, ENDING_STATES)
        self._end_job(job, reason or "UserTerminate")

    def delete_job(self, job_id: str) -> None:
        job = self.get_job(job_id)
        _refuse_if_ending(job, ("deleting",))
        was_live = job.state != "completed"
        if was_live and job.finishing is None:
            self._end_job(job, job.terminate_reason or "UserTerminate", then_state="deleting")
        job.set_state("deleting")
        self._spawn(self._remove_job(job))

    async def _remove_job(self, job: Job) -> None:
        if job.finishing is not None:
            await asyncio.shield(job.finishing)
        if job.wall_clock_timer:
            job.wall_clock_timer.cancel()
        self.jobs.pop(job.id, None)
        pool = self.pools.get(job.pool_id)
        for rec in job.nodes.values():
            node = pool.nodes.get(rec.node_id) if pool else None
            if node:
                await asyncio.to_thread(shutil.rmtree, node.root / "workitems" / job.id, True)

    def _end_job(self, job: Job, reason: str, then_state: str = "terminating") -> None:
        """Batch's terminate: kill running tasks, stop placing new ones, run release where prep ran."""
        job.set_state(then_state)
        job.terminate_reason = reason
        if job.wall_clock_timer:
            job.wall_clock_timer.cancel()
            job.wall_clock_timer = None
        job.finishing = self._spawn(self._finish_job(job))

    async def _finish_job(self, job: Job) -> None:
        for key, running in list(self._procs.items()):
            if key[0] == job.id:
                running.kill("job terminated")
        for rec in job.nodes.values():
            for task_id in rec.waiting:
                task = job.tasks.get(task_id)
                node = self.node_of(job, rec.node_id)
                if task and node:
                    self._unplace(job, task, node)
                    self._set_task_state(job, task, "active")
            rec.waiting.clear()
        runs = [t for (jid, _), t in list(self._runs.items()) if jid == job.id]
        await asyncio.gather(*runs, return_exceptions=True)
        if job.release_spec is not None:
            # Release runs where the job ran: prep succeeded (or tasks ran beside it) and no reboot voided it.
            releases = [self._run_release(job, rec) for rec in job.nodes.values()
                        if rec.prep_state == "completed" and not rec.prep_needed
                        and (rec.prep_succeeded or rec.ran_tasks) and self.node_of(job, rec.node_id)]
            await asyncio.gather(*releases, return_exceptions=True)
        job.end_time = now()
        if job.state != "deleting":
            job.set_state("completed")
        log.info("job completed", extra={"job": job.id, "reason": job.terminate_reason})

    def _check_all_complete(self, job: Job) -> None:
        if (job.state == "active" and job.on_all_tasks_complete == "terminatejob"
                and job.counts["active"] == 0 and job.counts["running"] == 0):
            self._end_job(job, "AllTasksComplete")

    # ----- tasks ----------------------------------------------------------------------------------

    def add_task(self, job_id: str, body: dict) -> Task:
        job = self.get_job(job_id)
        _refuse_if_ending(job, ENDING_STATES)
        task = self._new_task(job, body)
        self._enqueue(job, task)
        return task

    def add_tasks(self, job_id: str, bodies: list) -> list[dict]:
        job = self.get_job(job_id)
        _refuse_if_ending(job, ENDING_STATES)
        results = []
        for body in bodies:
            task_id = body.get("id") if isinstance(body, dict) else None
            try:
                if not isinstance(body, dict):
                    raise invalid_property("value", body, "each task must be an object")
                task = self._new_task(job, body)
            except BatchError as err:
                results.append({"status": "clienterror", "taskId": task_id,
                                "error": err.body(self.base_url)})
                continue
            self._enqueue(job, task)
            results.append({"status": "success", "taskId": task.id, "eTag": task.etag,
                            "lastModified": fmt_time(task.last_modified), "location": f"{self.base_url}/jobs/{job.id}/tasks/{task.id}"})
        return results

    def _new_task(self, job: Job, body: dict) -> Task:
        task = task_from_body(body, job)
        prep_id = (job.prep_spec or {}).get("id", PREP_ID)
        release_id = (job.release_spec or {}).get("id", RELEASE_ID)
        if job.prep_spec is not None and task.id == prep_id:
            raise BatchError(409, "TaskIdSameAsJobPreparationTask",
                             "The task id is the same as the job preparation task's id.", TaskId=task.id)
        if job.release_spec is not None and task.id == release_id:
            raise BatchError(409, "TaskIdSameAsJobReleaseTask",
                             "The task id is the same as the job release task's id.", TaskId=task.id)
        if task.id in job.tasks:
            raise BatchError(409, "TaskExists", "The specified task already exists.", TaskId=task.id)
        return task

    def _enqueue(self, job: Job, task: Task) -> None:
        job.task_seq += 1
        task.seq = job.task_seq
        job.tasks[task.id] = task
        job.counts["active"] += 1
        job.slot_counts["active"] += task.required_slots
        job.pending.append(task.id)
        self.wake()

    def get_task(self, job_id: str, task_id: str) -> Task:
        task = self.get_job(job_id).tasks.get(task_id)
        if task is None:
            raise not_found("Task", task_id)
        return task

    def terminate_task(self, job_id: str, task_id: str) -> None:
        job = self.get_job(job_id)
        task = self.get_task(job_id, task_id)
        if task.state == "completed":
            raise BatchError(409, "TaskCompleted", "The specified task is already completed.", TaskId=task_id)
        task.user_terminated = True
        running = self._procs.get((job.id, task.id, task.node_id))
        if running:
            running.kill("terminated by the user")
            return
        node = self.node_of(job, task.node_id) if task.node_id else None
        if node:
            self._unplace(job, task, node)
        self._complete_task(job, task, None, process.failure("TaskEnded", "The task was terminated by the user."))

    def delete_task(self, job_id: str, task_id: str) -> None:
        job = self.get_job(job_id)
        task = self.get_task(job_id, task_id)
        running = self._procs.get((job.id, task.id, task.node_id))
        if running:
            running.kill("deleted")
        node = self.node_of(job, task.node_id) if task.node_id else None
        if node and task.run_token is not None:
            self._unplace(job, task, node)
        self._count(job, task, -1)
        del job.tasks[task.id]
        self._check_all_complete(job)
        self.wake()

    # ----- bookkeeping ----------------------------------------------------------------------------

    @staticmethod
    def _bucket(task: Task) -> list[str]:
        if task.state == "completed":
            return ["completed", "failed" if task.execution.failure else "succeeded"]
        return ["running" if task.state in ("running", "preparing") else "active"]

    def _count(self, job: Job, task: Task, sign: int) -> None:
        for bucket in self._bucket(task):
            job.counts[bucket] += sign
            job.slot_counts[bucket] += sign * task.required_slots

    def _set_task_state(self, job: Job, task: Task, state: str) -> None:
        self._count(job, task, -1)
        task.set_state(state)
        self._count(job, task, +1)

    def node_of(self, job: Job, node_id: str | None) -> Node | None:
        pool = self.pools.get(job.pool_id)
        return pool.nodes.get(node_id) if pool and node_id else None

    def _unplace(self, job: Job, task: Task, node: Node) -> None:
        if (job.id, task.id) in node.running:
            node.running.discard((job.id, task.id))
            node.used_slots -= task.required_slots
            job.running -= 1
        task.run_token = None
        rec = job.nodes.get(node.id)
        if rec and task.id in rec.waiting:
            rec.waiting.remove(task.id)
        if node.state == "running" and not node.running:
            node.set_state("idle")

    # ----- scheduling -----------------------------------------------------------------------------

    async def _dispatch_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                self._schedule()
            except Exception:  # the scheduler must survive one bad job
                log.exception("scheduling pass failed")

    def _schedule(self) -> None:
        jobs = sorted((j for j in self.jobs.values() if j.state == "active" and j.pending),
                      key=lambda j: (-j.priority, j.seq))
        for job in jobs:
            pool = self.pools.get(job.pool_id)
            if pool is None or pool.state != "active":
                continue
            limit = job.spec.get("maxParallelTasks", -1)
            while job.pending and (limit is None or limit < 0 or job.running < limit):
                task = job.tasks.get(job.pending[0])
                if task is None or task.state != "active":
                    job.pending.popleft()
                    continue
                node = self._pick_node(pool, job, task.required_slots)
                if node is None:
                    break
                job.pending.popleft()
                self._place(job, task, node)

    @staticmethod
    def _pick_node(pool: Pool, job: Job, slots: int) -> Node | None:
        best, best_free = None, 0
        for node in pool.nodes.values():
            if node.state not in ("idle", "running"):
                continue
            rec = job.nodes.get(node.id)
            if rec and rec.ineligible:
                continue
            free = node.slots - node.used_slots
            if free >= slots and free > best_free:
                best, best_free = node, free
        return best

    def _place(self, job: Job, task: Task, node: Node) -> None:
        node.running.add((job.id, task.id))
        node.used_slots += task.required_slots
        job.running += 1
        if node.state == "idle":
            node.set_state("running")
        task.node_id, task.pool_id = node.id, node.pool_id
        task.run_token = token = object()
        rec = job.nodes.get(node.id)
        if rec is None:
            rec = job.nodes[node.id] = NodeJobRecord(node_id=node.id, pool_id=node.pool_id)
        prep = job.prep_spec
        if prep is not None and rec.prep_needed and rec.prep_state != "running":
            self._spawn(self._run_prep(job, node, rec))
        if prep is not None and prep.get("waitForSuccess", True) and not (rec.prep_succeeded and not rec.prep_needed):
            self._set_task_state(job, task, "preparing")
            rec.waiting.append(task.id)
            return
        self._start_run(job, task, node, token)

    def _start_run(self, job: Job, task: Task, node: Node, token: object) -> None:
        self._set_task_state(job, task, "running")
        rec = job.nodes.get(node.id)
        if rec:
            rec.ran_tasks = True
        run = asyncio.create_task(self._run_task(job, task, node, token))
        key = (job.id, task.id)
        self._runs[key] = run
        run.add_done_callback(lambda _t: self._forget_run(key, run))
        run.add_done_callback(_log_crash)

    def _forget_run(self, key: tuple[str, str], run: asyncio.Task) -> None:
        if self._runs.get(key) is run:
            del self._runs[key]

    # ----- running things on nodes ----------------------------------------------------------------

    def _node_env(self, node: Node) -> dict[str, str]:
        """The part of a task's environment that is the same for every task on the node."""
        root = str(node.root)
        env = {k: os.environ[k] for k in BASE_ENV_KEYS if k in os.environ}
        env.update({
            "AZ_BATCH_ACCOUNT_NAME": self.config.account_name,
            "AZ_BATCH_ACCOUNT_URL": self.base_url,
            "AZ_BATCH_POOL_ID": node.pool_id,
            "AZ_BATCH_NODE_ID": node.id,
            "AZ_BATCH_NODE_IS_DEDICATED": "true",
            "AZ_BATCH_NODE_ROOT_DIR": root,
            "AZ_BATCH_NODE_SHARED_DIR": f"{root}/shared",
            "AZ_BATCH_NODE_STARTUP_DIR": f"{root}/startup",
            "AZ_BATCH_NODE_MOUNTS_DIR": f"{root}/fsmounts",
            "PATH": f"{env.get('PATH', '/usr/bin:/bin')}:{root}/shared",
        })
        return env

    def _env(self, job: Job, node: Node, task_id: str, task_dir: str, wd: str, own: list | None) -> dict:
        env = dict(node.env)
        env.update({
            "AZ_BATCH_JOB_ID": job.id,
            "AZ_BATCH_TASK_ID": task_id,
            "AZ_BATCH_TASK_DIR": task_dir,
            "AZ_BATCH_TASK_WORKING_DIR": wd,
            "HOME": wd,
            "PWD": wd,
            "PATH": f"{env['PATH']}:{wd}",
        })
        if job.prep_spec is not None:
            prep_dir = f"{node.root}/{task_rel_dir(job.id, job.prep_spec.get('id', PREP_ID))}"
            env["AZ_BATCH_JOB_PREP_DIR"] = prep_dir
            env["AZ_BATCH_JOB_PREP_WORKING_DIR"] = f"{prep_dir}/wd"
        for item in (job.spec.get("commonEnvironmentSettings") or []) + (own or []):
            env[item["name"]] = item.get("value") or ""
        return env

    async def _execute(self, job: Job, node: Node, task_id: str, spec: dict, timeout: timedelta | None,
                       key: tuple, live=lambda: True) -> tuple[process.Outcome, Path]:
        """Run one task-like command on a node, through the node's agent."""
        task_dir = f"{node.root}/{task_rel_dir(job.id, task_id)}"
        wd = f"{task_dir}/wd"
        if spec.get("resourceFiles"):
            # Files land in the working directory before the command starts, so it must exist first.
            await asyncio.to_thread(os.makedirs, wd, exist_ok=True)
            try:
                await transfer.download_resource_files(spec["resourceFiles"], Path(wd))
            except transfer.TransferError as err:
                return process.Outcome(None, err.info), Path(wd)
        env = self._env(job, node, task_id, task_dir, wd, spec.get("environmentSettings"))
        seconds = None if timeout is None or timeout >= timedelta(days=3650) else timeout.total_seconds()
        started = await node.agent.start_command(spec["commandLine"], wd, env, [task_dir, wd],
                                                        f"{task_dir}/stdout.txt", f"{task_dir}/stderr.txt")
        self._procs[key] = started
        if not live():  # ended (terminate, reboot) while the agent was starting
            started.kill("ended before it started")
        try:
            outcome = await process.wait(started, seconds)
        finally:
            self._procs.pop(key, None)
        return outcome, Path(wd)

    async def _run_task(self, job: Job, task: Task, node: Node, token: object) -> None:
        generation = node.generation
        task.execution.start_time = now()
        task.execution.end_time = None
        task.execution.exit_code = None
        task.execution.failure = None
        outcome, wd = await self._execute(
            job, node, task.id, task.spec, task.max_wall_clock, (job.id, task.id, node.id),
            live=lambda: (job.state == "active" and task.run_token is token and node.generation == generation
                          and not task.user_terminated))
        if task.run_token is not token or node.generation != generation:
            return  # a reboot or delete took the task away while it ran
        problems = await transfer.upload_output_files(task.spec.get("outputFiles") or [], wd,
                                                      failed=outcome.failure is not None)
        if task.run_token is not token:
            return
        failure = outcome.failure
        if problems and failure is None:
            failure = process.failure("FileUploadFailed", "; ".join(problems)[:1024])
        self._unplace(job, task, node)
        node.total_run += 1
        if failure is None:
            node.total_succeeded += 1
        node.recent = (node.recent + [{"taskUrl": f"{self.base_url}/jobs/{job.id}/tasks/{task.id}",
                                       "jobId": job.id, "taskId": task.id, "taskState": "completed",
                                       "executionInfo": {"exitCode": outcome.exit_code}}])[-10:]
        retries = task.max_retries
        if (failure is not None and job.state == "active" and not task.user_terminated
                and (retries < 0 or task.execution.retry_count < retries)):
            task.execution.retry_count += 1
            task.execution.last_retry_time = now()
            task.execution.exit_code = outcome.exit_code
            self._set_task_state(job, task, "active")
            job.pending.appendleft(task.id)
            self.wake()
            return
        self._complete_task(job, task, outcome.exit_code, failure)

    def _complete_task(self, job: Job, task: Task, exit_code: int | None, failure: dict | None) -> None:
        self._count(job, task, -1)
        task.execution.end_time = now()
        task.execution.exit_code = exit_code
        task.execution.failure = failure
        task.set_state("completed")
        self._count(job, task, +1)
        self._check_all_complete(job)
        self.wake()

    async def _run_prep(self, job: Job, node: Node, rec: NodeJobRecord) -> None:
        spec = job.prep_spec or {}
        generation = node.generation
        rec.prep_state, rec.prep_needed = "running", False
        rec.prep = Execution(start_time=now())
        constraints = spec.get("constraints") or {}
        retries = constraints.get("maxTaskRetryCount", 0)
        timeout = parse_duration("jobPreparationTask.constraints.maxWallClockTime",
                                 constraints.get("maxWallClockTime"))
        while True:
            outcome, _ = await self._execute(job, node, spec.get("id", PREP_ID), spec, timeout,
                                             (job.id, "#prep", node.id),
                                             live=lambda: job.state == "active" and node.generation == generation)
            if node.generation != generation:
                return
            if outcome.failure is None or job.state != "active":
                break
            if 0 <= retries <= rec.prep.retry_count:
                break
            rec.prep.retry_count += 1
            rec.prep.last_retry_time = now()
        rec.prep.end_time = now()
        rec.prep.exit_code = outcome.exit_code
        rec.prep.failure = outcome.failure
        rec.prep_state = "completed"
        waiting, rec.waiting = rec.waiting, []
        if outcome.failure is not None:
            rec.ineligible = True
            log.info("job preparation failed", extra={"job": job.id, "node": node.id})
            for task_id in waiting:
                task = job.tasks.get(task_id)
                if task:
                    self._unplace(job, task, node)
                    self._set_task_state(job, task, "active")
                    job.pending.appendleft(task.id)
        elif job.state == "active":
            for task_id in waiting:
                task = job.tasks.get(task_id)
                if task and task.state == "preparing" and task.run_token is not None:
                    self._start_run(job, task, node, task.run_token)
        self.wake()

    async def _run_release(self, job: Job, rec: NodeJobRecord) -> None:
        spec = job.release_spec
        node = self.node_of(job, rec.node_id)
        if spec is None or node is None:
            return
        limit = parse_duration("jobReleaseTask.maxWallClockTime", spec.get("maxWallClockTime"), RELEASE_LIMIT)
        rec.release = Execution(start_time=now())
        rec.release_state = "running"
        outcome, _ = await self._execute(job, node, spec.get("id", RELEASE_ID), spec, min(limit, RELEASE_LIMIT),
                                         (job.id, "#release", node.id))
        rec.release.end_time = now()
        rec.release.exit_code = outcome.exit_code
        rec.release.failure = outcome.failure
        rec.release_state = "completed"

    # ----- views ----------------------------------------------------------------------------------

    def task_wire(self, job: Job, task: Task) -> dict:
        rel = task_rel_dir(job.id, task.id) if task.node_id else None
        return task.wire(self.base_url, rel)

    def prep_release_status(self, job: Job) -> list[dict]:
        if job.prep_spec is None:
            raise BatchError(409, "JobPreparationTaskNotSpecified",
                             "The specified job does not have a job preparation task.", JobId=job.id)
        out = []
        for rec in job.nodes.values():
            if rec.prep_state is None:
                continue
            node_url = f"{self.base_url}/pools/{rec.pool_id}/nodes/{rec.node_id}"
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


# What Batch answers when a job can no longer be terminated or take tasks.
_ENDING_ERRORS = {
    "completed": ("JobCompleted", "The specified job is already in a completed state."),
    "terminating": ("JobBeingTerminated", "The specified job is being terminated."),
    "deleting": ("JobBeingDeleted", "The specified job has been marked for deletion."),
}
ENDING_STATES = tuple(_ENDING_ERRORS)


def _refuse_if_ending(job: Job, states: tuple[str, ...]) -> None:
    if job.state in states:
        code, message = _ENDING_ERRORS[job.state]
        raise BatchError(409, code, message, JobId=job.id)


def _log_crash(task: asyncio.Task) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("background work failed", exc_info=task.exception())
