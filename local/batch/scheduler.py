"""Which task runs on which node, and when: Batch's queue, run in passes on the account's event loop.

Placing is synchronous and happens in passes that anything freeing or needing a slot asks for
(`AccountState.wake`) rather than at each change, so adding a collection of tasks costs one pass.
"""

from __future__ import annotations

import logging

from local.batch.bookkeeping import occupy, set_task_state
from local.batch.executor import Executor
from local.batch.model import Job, Node, NodeJobRecord, Pool, Task
from local.batch.state import AccountState

log = logging.getLogger("local.batch")


class Scheduler:
    def __init__(self, state: AccountState, executor: Executor):
        self.state = state
        self.executor = executor

    async def run(self) -> None:
        woken = self.state.woken
        while True:
            await woken.wait()
            woken.clear()
            try:
                self.schedule()
            except Exception:  # the scheduler must survive one bad job
                log.exception("scheduling pass failed")

    def schedule(self) -> None:
        jobs = sorted((j for j in self.state.jobs.values() if j.state == "active" and j.pending),
                      key=lambda j: (-j.priority, j.seq))
        for job in jobs:
            pool = self.state.pools.get(job.pool_id)
            if pool is None or pool.state != "active":
                continue
            limit = job.spec.get("maxParallelTasks", -1)
            while job.pending and (limit is None or limit < 0 or job.running < limit):
                task = job.tasks.get(job.pending[0])
                if task is None or task.state != "active":
                    job.pending.popleft()
                    continue
                node = _pick_node(pool, job, task.required_slots)
                if node is None:
                    break
                job.pending.popleft()
                self._place(job, task, node)

    def _place(self, job: Job, task: Task, node: Node) -> None:
        token = occupy(job, task, node)
        rec = job.nodes.get(node.id)
        if rec is None:
            rec = job.nodes[node.id] = NodeJobRecord(node_id=node.id, pool_id=node.pool_id)
        prep = job.prep_spec
        if prep is not None and rec.prep_needed and rec.prep_state != "running":
            self.executor.start_prep(job, node, rec)
        if prep is not None and prep.get("waitForSuccess", True) and not (rec.prep_succeeded and not rec.prep_needed):
            set_task_state(job, task, "preparing")
            rec.waiting.append(task.id)
            return
        self.executor.start_run(job, task, node, token)


def _pick_node(pool: Pool, job: Job, slots: int) -> Node | None:
    """The eligible node with the most free slots (Batch's default `spread` fill)."""
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
