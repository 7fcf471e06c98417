"""The emulated Batch account: the one object the REST layer and the server hold.

It wires the parts together (pools, jobs, tasks, the scheduler and the executor share one
AccountState) and owns their lifecycle, so callers need not know how the work is divided.
Everything runs on one event loop, which is why none of the parts takes locks.
"""

from __future__ import annotations

import asyncio

from local.batch.config import EmulatorConfig
from local.batch.executor import Executor
from local.batch.jobs import Jobs
from local.batch.model import Job, Node, Pool, Task
from local.batch.pools import Pools
from local.batch.resize import Resizer
from local.batch.scheduler import Scheduler
from local.batch.state import AccountState
from local.batch.tasks import Tasks


class Account:
    def __init__(self, config: EmulatorConfig, base_url: str):
        self.state = AccountState(config, base_url)
        self.config = config
        self.base_url = base_url
        self.pools: dict[str, Pool] = self.state.pools
        self.jobs: dict[str, Job] = self.state.jobs
        self._executor = Executor(self.state)
        self._scheduler = Scheduler(self.state, self._executor)
        self._pool_ops = Pools(self.state, self._executor)
        self._job_ops = Jobs(self.state, self._executor)
        self._task_ops = Tasks(self.state, self._executor)
        # The routes added for issue 15 call these directly rather than through one wrapper each.
        self.resizer = Resizer(self.state, self._pool_ops)
        self.job_ops = self._job_ops
        self.task_ops = self._task_ops
        self._dispatcher: asyncio.Task | None = None

    async def start(self) -> None:
        self.state.workspace.mkdir(parents=True, exist_ok=True)
        self.state.identities.check_reachable(self.state.workspace)
        for spec in self.config.pools:
            self.create_pool({"id": spec.pool_id, "vmSize": "standard_d2s_v3",
                              "targetDedicatedNodes": spec.nodes, "taskSlotsPerNode": spec.slots_per_node})
        self._dispatcher = asyncio.create_task(self._scheduler.run())
        self.state.spawn(self.state.retention.run())

    async def close(self) -> None:
        self._executor.kill_all("emulator stopping")
        tasks = [t for t in (self._dispatcher, *self.state.background, *self._executor.in_flight()) if t]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.gather(*(node.agent.close() for pool in self.pools.values() for node in pool.nodes.values()),
                             return_exceptions=True)

    # ----- what the REST layer calls ---------------------------------------------------------------

    def create_pool(self, body: dict) -> Pool:
        return self._pool_ops.create_pool(body)

    def get_pool(self, pool_id: str) -> Pool:
        return self._pool_ops.get_pool(pool_id)

    def delete_pool(self, pool_id: str) -> None:
        self._pool_ops.delete_pool(pool_id)

    def get_node(self, pool_id: str, node_id: str) -> Node:
        return self._pool_ops.get_node(pool_id, node_id)

    def reboot_node(self, pool_id: str, node_id: str, option: str = "requeue") -> None:
        self._pool_ops.reboot_node(pool_id, node_id, option)

    def node_of(self, job: Job, node_id: str | None) -> Node | None:
        return self.state.node_of(job, node_id)

    def create_job(self, body: dict) -> Job:
        return self._job_ops.create_job(body)

    def get_job(self, job_id: str) -> Job:
        return self._job_ops.get_job(job_id)

    def update_job(self, job_id: str, body: dict, replace: bool) -> Job:
        return self._job_ops.update_job(job_id, body, replace)

    def terminate_job(self, job_id: str, reason: str | None) -> None:
        self._job_ops.terminate_job(job_id, reason)

    def delete_job(self, job_id: str) -> None:
        self._job_ops.delete_job(job_id)

    def prep_release_status(self, job: Job) -> list[dict]:
        return self._job_ops.prep_release_status(job)

    def add_task(self, job_id: str, body: dict) -> Task:
        return self._task_ops.add_task(job_id, body)

    def add_tasks(self, job_id: str, bodies: list) -> list[dict]:
        return self._task_ops.add_tasks(job_id, bodies)

    def get_task(self, job_id: str, task_id: str) -> Task:
        return self._task_ops.get_task(job_id, task_id)

    def terminate_task(self, job_id: str, task_id: str) -> None:
        self._task_ops.terminate_task(job_id, task_id)

    def delete_task(self, job_id: str, task_id: str) -> None:
        self._task_ops.delete_task(job_id, task_id)

    def task_wire(self, job: Job, task: Task) -> dict:
        return self._task_ops.task_wire(job, task)
