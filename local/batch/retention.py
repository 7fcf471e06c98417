"""Deleting a run's directory on its node once its retention time after the run's end has passed.

Batch keeps a task's directory "for the minimum time ... from the time it completes execution. After this time,
the Batch service may delete the Task directory and all its contents" (constraints.retentionTime, default 7 days:
https://learn.microsoft.com/rest/api/batchservice/task/add#taskconstraints); the same holds for the job
preparation task (its constraints.retentionTime) and the job release task (its retentionTime:
https://learn.microsoft.com/rest/api/batchservice/job/add#jobreleasetask). The emulator deletes exactly when
the time passes. Once deleted, the task's file list is empty and reading a file gets 404 FileNotFound.

One heap of deadlines and one coroutine sleeping until the earliest: no timer per task and no scan of the
tasks. An entry holds ids, not objects, and is checked when due, so a run that ran again meanwhile (a retry, a
reactivation, a prep after a reboot) or a job deleted meanwhile keeps its files or needs no work.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import shutil
from datetime import datetime, timedelta

from local.batch.wire import now, parse_duration

DEFAULT = timedelta(days=7)
PREP, RELEASE = "#prep", "#release"


def retention_of(name: str, value) -> timedelta:
    return parse_duration(name, value, DEFAULT)


class Retention:
    def __init__(self, jobs: dict):
        self._jobs = jobs
        self._heap: list[tuple] = []
        self._seq = itertools.count()
        self._changed = asyncio.Event()

    def keep(self, path: str, end: datetime, retention: timedelta, job_id: str, run: str,
             node_id: str | None = None) -> None:
        """The directory of a run that ended at `end`: delete it `retention` later, if it is still that run's.
        run is a task id, or PREP/RELEASE with the node id."""
        if retention >= timedelta(days=3650):
            return
        entry = (end + retention, next(self._seq), path, end, job_id, run, node_id)
        heapq.heappush(self._heap, entry)
        if self._heap[0] is entry:
            self._changed.set()

    def _still_ended(self, end: datetime, job_id: str, run: str, node_id: str | None) -> bool:
        job = self._jobs.get(job_id)
        if job is None:
            return False  # deleted: its directories went with it
        if run in (PREP, RELEASE):
            rec = job.nodes.get(node_id)
            execution = rec and (rec.prep if run == PREP else rec.release)
            return bool(execution) and execution.end_time == end
        task = job.tasks.get(run)
        return task is not None and task.state == "completed" and task.execution.end_time == end

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
            _, _, path, end, job_id, run, node_id = heapq.heappop(self._heap)
            if self._still_ended(end, job_id, run, node_id):
                await asyncio.to_thread(shutil.rmtree, path, True)
