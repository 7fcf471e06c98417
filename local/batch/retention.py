"""Deleting a run's directory on its node once its retention time after the run's end has passed.

Batch keeps a task's directory "for the minimum time ... from the time it completes execution. After this time,
the Batch service may delete the Task directory and all its contents" (constraints.retentionTime, default 7 days:
https://learn.microsoft.com/rest/api/batchservice/task/add#taskconstraints); the same holds for the job
preparation task (its constraints.retentionTime) and the job release task (its retentionTime:
https://learn.microsoft.com/rest/api/batchservice/job/add#jobreleasetask). The emulator deletes exactly when
the time passes. Once deleted, the task's file list is empty and reading a file gets 404 FileNotFound.

One heap of deadlines and one coroutine sleeping until the earliest: no timer per task and no scan of the
tasks. An entry holds ids, not objects or paths (a few dozen bytes for each of 100,000 tasks kept for 7 days),
and is checked when due, so a run that ran again meanwhile (a retry, a
reactivation, a prep after a reboot) or a job deleted meanwhile keeps its files or needs no work.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import shutil
from datetime import datetime, timedelta

from local.batch.environment import PREP_ID, RELEASE_ID, task_rel_dir
from local.batch.wire import now, parse_duration

DEFAULT = timedelta(days=7)
PREP, RELEASE = "#prep", "#release"


def retention_of(name: str, value) -> timedelta:
    return parse_duration(name, value, DEFAULT)


class Retention:
    def __init__(self, jobs: dict, pools: dict):
        self._jobs = jobs
        self._pools = pools
        self._heap: list[tuple] = []
        self._seq = itertools.count()
        self._changed = asyncio.Event()

    def keep(self, end: datetime, retention: timedelta, job_id: str, run: str, node_id: str) -> None:
        """The directory of a run (a task id, or PREP/RELEASE) that ended at `end` on a node: delete it
        `retention` later, if it is still that run's."""
        if retention >= timedelta(days=3650):
            return
        entry = (end + retention, next(self._seq), end, job_id, run, node_id)
        heapq.heappush(self._heap, entry)
        if self._heap[0] is entry:
            self._changed.set()

    def _expired(self, end: datetime, job_id: str, run: str, node_id: str) -> str | None:
        """The run's directory, if it is still that run's: None when the run ran again or the job went."""
        job = self._jobs.get(job_id)
        pool = job and self._pools.get(job.pool_id)
        node = pool and pool.nodes.get(node_id)
        if node is None:
            return None  # the job was deleted (its directories with it) or the node left the pool
        if run in (PREP, RELEASE):
            rec = job.nodes.get(node_id)
            execution = rec and (rec.prep if run == PREP else rec.release)
            spec = (job.prep_spec if run == PREP else job.release_spec) or {}
            if not execution or execution.end_time != end:
                return None
            return f"{node.root}/{task_rel_dir(job.id, spec.get('id', PREP_ID if run == PREP else RELEASE_ID))}"
        task = job.tasks.get(run)
        if task is None or task.state != "completed" or task.execution.end_time != end:
            return None
        return f"{node.root}/{task_rel_dir(job.id, task.id)}"

    async def run(self) -> None:
        while True:
            self._changed.clear()
            if not self._heap:
                await self._changed.wait()
                continue
            wait = (self._heap[0][0] - now()).total_seconds()
            if wait > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), wait)
                continue
            _, _, end, job_id, run, node_id = heapq.heappop(self._heap)
            path = self._expired(end, job_id, run, node_id)
            if path is not None:
                await asyncio.to_thread(shutil.rmtree, path, True)
