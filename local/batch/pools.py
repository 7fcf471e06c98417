"""Pools of simulated nodes: creating and deleting them, and rebooting a node under its running tasks.

Nodes are fixed at pool creation (no resizing or autoscale), each with a directory laid out like a
Batch node and its own agent process. A reboot or a pool delete takes tasks away from a node at once;
bumping the node's generation is what tells runs still in flight that they no longer own their task.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import shutil

from local.batch import process
from local.batch.environment import NODE_DIRS, node_env
from local.batch.errors import BatchError, lookup
from local.batch.executor import Executor
from local.batch.model import Node, Pool
from local.batch.specs import pool_from_body
from local.batch.starttask import StartTasks
from local.batch.state import AccountState
from local.batch.wire import now

log = logging.getLogger("local.batch")


def node_id_for(pool_id: str, index: int, dedicated: bool = True) -> str:
    digest = hashlib.sha256(pool_id.encode()).hexdigest()[:10]
    return f"tvmps_{digest}{index:04d}_{'d' if dedicated else 'p'}"


class Pools:
    def __init__(self, state: AccountState, executor: Executor):
        self.state = state
        self.executor = executor
        self.start_tasks = StartTasks(state, executor)

    def create_pool(self, body: dict) -> Pool:
        state = self.state
        pool = pool_from_body(body)
        if pool.id in state.pools:
            raise BatchError(409, "PoolExists", "The specified pool already exists.", PoolId=pool.id)
        state.packages.apps.check_pool_refs(pool.spec.get("applicationPackageReferences") or [])
        state.identities.prepare_pool(pool.spec.get("userAccounts") or [])
        self.add_nodes(pool, pool.target_dedicated, dedicated=True)
        self.add_nodes(pool, pool.target_low_priority, dedicated=False)
        state.pools[pool.id] = pool
        log.info("pool created", extra={"pool": pool.id, "nodes": len(pool.nodes)})
        state.wake()
        return pool

    def add_nodes(self, pool: Pool, count: int, dedicated: bool) -> None:
        """Nodes joining the pool: a directory laid out like a Batch node, an agent, then the start task."""
        for _ in range(count):
            node_id = node_id_for(pool.id, pool.next_index, dedicated)
            pool.next_index += 1
            root = self.state.workspace / "pools" / pool.id / "nodes" / node_id
            for sub in NODE_DIRS:
                (root / sub).mkdir(parents=True, exist_ok=True)
            # "shared: read/write access to all tasks that run on a node"
            # (https://learn.microsoft.com/azure/batch/files-and-directories), whichever account they run as.
            (root / "shared").chmod(0o777)
            node = pool.nodes[node_id] = Node(id=node_id, pool_id=pool.id, root=root, slots=pool.slots_per_node,
                                              state="idle", agent=process.NodeAgent(node_id), dedicated=dedicated,
                                              start_spec=pool.spec.get("startTask"))
            node.env = node_env(self.state.config, self.state.base_url, node)
            node.agent.boot()
            self.state.packages.deploy_pool_packages(node, pool.spec.get("applicationPackageReferences") or [],
                                                     self.state.spawn)
            self.start_tasks.boot(node, node.start_spec)

    async def remove_node(self, pool: Pool, node: Node) -> None:
        """The node leaves the pool: its tasks were already taken away (evict) or have finished."""
        node.set_state("leavingpool")
        pool.nodes.pop(node.id, None)
        await node.agent.close()
        await asyncio.to_thread(shutil.rmtree, node.root, True)

    def get_pool(self, pool_id: str) -> Pool:
        return self.state.pool(pool_id)

    def get_node(self, pool_id: str, node_id: str) -> Node:
        return lookup(self.get_pool(pool_id).nodes, node_id, "Node")

    def delete_pool(self, pool_id: str) -> None:
        pool = self.get_pool(pool_id)
        if pool.state == "deleting":
            raise BatchError(409, "PoolBeingDeleted", "The specified pool has been marked for deletion.")
        pool.set_state("deleting")
        for node in pool.nodes.values():
            self.evict_node(node, requeue=True)
        self.state.spawn(self._remove_pool(pool))

    async def _remove_pool(self, pool: Pool) -> None:
        await asyncio.sleep(0)
        # Agents first: while the pool is still listed, close() would find them if this is cancelled.
        await asyncio.gather(*(node.agent.close() for node in pool.nodes.values()), return_exceptions=True)
        self.state.pools.pop(pool.id, None)
        await asyncio.to_thread(shutil.rmtree, self.state.workspace / "pools" / pool.id, True)

    def reboot_node(self, pool_id: str, node_id: str, option: str = "requeue") -> None:
        """Kill the node's running tasks and void its preparation runs.

        `requeue` puts the tasks back in the queue; `terminate` ends them as failed (Batch's other options,
        taskcompletion and retaineddata, are treated as requeue since the emulator reboots at once).
        """
        node = self.get_node(pool_id, node_id)
        if node.state == "rebooting":
            raise BatchError(409, "NodeBeingRebooted", "The node is already rebooting.")
        node.set_state("rebooting")
        self.evict_node(node, requeue=option != "terminate")
        for job in self.state.jobs.values():
            rec = job.nodes.get(node.id)
            # A prep that succeeded is kept across the reboot only when the job says so; one that failed or
            # never finished always runs again (jobPreparationTask.rerunOnNodeRebootAfterSuccess:
            # https://learn.microsoft.com/rest/api/batchservice/job/add#jobpreparationtask).
            if rec and not (rec.prep_succeeded and not (job.prep_spec or {}).get("rerunOnNodeRebootAfterSuccess", True)):
                rec.prep_needed = True
        self.state.spawn(self._finish_reboot(node))

    async def _finish_reboot(self, node: Node) -> None:
        await asyncio.sleep(self.state.config.reboot_seconds)
        node.boot_time = now()
        self.start_tasks.boot(node, node.start_spec)

    def evict_node(self, node: Node, requeue: bool) -> None:
        jobs = self.state.jobs
        node.generation += 1
        self.executor.kill_on_node(node.id, "node rebooted")
        for job_id, task_id in list(node.running):
            job = jobs.get(job_id)
            task = job.tasks.get(task_id) if job else None
            if job and task:
                self.executor.take_off(job, task, node, requeue=requeue and job.state == "active",
                                       because="its node rebooted")
        for job in jobs.values():
            rec = job.nodes.get(node.id)
            if rec and rec.prep_state == "running":
                rec.prep_state = "completed"
                rec.prep.end_time = now()
                rec.prep.failure = process.failure("NodeRebooted", "The node rebooted while the task ran.")
                rec.prep_needed = True
        self.state.wake()
