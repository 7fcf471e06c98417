"""What every part of the emulated account shares: its pools and jobs, its workspace, and its background work.

One object, handed to each part explicitly, so that pools, jobs, the scheduler and the executor see the
same dicts without reaching into each other; waking the scheduler is here for the same reason, since
almost every state change may free or need a slot.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from local.batch.applications import Applications
from local.batch.config import EmulatorConfig
from local.batch.errors import lookup
from local.batch.identity import Identities
from local.batch.ids import IdMap
from local.batch.model import Job, Node, Pool
from local.batch.packages import Packages
from local.batch.retention import Retention

log = logging.getLogger("local.batch")


class AccountState:
    def __init__(self, config: EmulatorConfig, base_url: str):
        self.config = config
        self.base_url = base_url
        self.workspace = Path(config.workspace).resolve()
        self.pools: dict[str, Pool] = IdMap()
        self.jobs: dict[str, Job] = IdMap()
        self.woken = asyncio.Event()
        self.background: set[asyncio.Task] = set()
        self.identities = Identities(config.switch_users)
        self.retention = Retention(self.jobs, self.pools)
        self.packages = Packages(Applications(config.app_storage))

    def wake(self) -> None:
        """Ask for a scheduling pass."""
        self.woken.set()

    def spawn(self, coro) -> asyncio.Task:
        task = asyncio.create_task(coro)
        self.background.add(task)
        task.add_done_callback(self.background.discard)
        task.add_done_callback(log_crash)
        return task

    def job(self, job_id: str) -> Job:
        return lookup(self.jobs, job_id, "Job")

    def pool(self, pool_id: str) -> Pool:
        return lookup(self.pools, pool_id, "Pool")

    def node_of(self, job: Job, node_id: str | None) -> Node | None:
        pool = self.pools.get(job.pool_id)
        return pool.nodes.get(node_id) if pool and node_id else None


def log_crash(task: asyncio.Task) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("background work failed", exc_info=task.exception())
