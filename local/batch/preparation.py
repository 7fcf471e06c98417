"""The job preparation and release tasks' runs on a node: a mixin of the Executor, which it shares their
process bookkeeping with (see executor.py)."""

from __future__ import annotations

import logging
from datetime import timedelta

from local.batch.bookkeeping import set_task_state, unplace
from local.batch.environment import PREP_ID, RELEASE_ID
from local.batch.model import Execution, Job, Node, NodeJobRecord
from local.batch.retention import PREP, RELEASE, retention_of
from local.batch.wire import now, parse_duration

log = logging.getLogger("local.batch")

RELEASE_LIMIT = timedelta(minutes=15)


class PrepAndRelease:
    def start_prep(self, job: Job, node: Node, rec: NodeJobRecord) -> None:
        """Start the node's preparation run for the job, once per node whatever its free slots.

        Marked running here, before the run's coroutine is first scheduled: every task placed on the node in
        the same scheduling pass must see that a run is already under way, not start its own."""
        rec.prep_state, rec.prep_needed = "running", False
        rec.prep = Execution(start_time=now())
        self.state.spawn(self._run_prep(job, node, rec, node.generation))

    async def _run_prep(self, job: Job, node: Node, rec: NodeJobRecord, generation: int) -> None:
        spec = job.prep_spec or {}
        constraints = spec.get("constraints") or {}
        retries = constraints.get("maxTaskRetryCount", 0)
        timeout = parse_duration("jobPreparationTask.constraints.maxWallClockTime",
                                 constraints.get("maxWallClockTime"))
        while True:
            outcome, _, _ = await self._execute(job, node, spec.get("id", PREP_ID), spec, timeout,
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
        self.state.retention.keep(rec.prep.end_time, retention_of("jobPreparationTask.constraints.retentionTime",
                                                                  constraints.get("retentionTime")),
                                  job.id, PREP, node.id)
        waiting, rec.waiting = rec.waiting, []
        # "If false, ... other Tasks of the Job can start executing on the Compute Node while the Job Preparation
        # Task is still running; and even if the Job Preparation Task fails, new Tasks will continue to be
        # scheduled on the Compute Node": https://learn.microsoft.com/rest/api/batchservice/job/add#jobpreparationtask
        if outcome.failure is not None and spec.get("waitForSuccess", True):
            rec.ineligible = True
            log.info("job preparation failed", extra={"job": job.id, "node": node.id})
            for task_id in waiting:
                task = job.tasks.get(task_id)
                if task:
                    unplace(job, task, node)
                    set_task_state(job, task, "active")
                    job.pending.appendleft(task.id)
        elif job.state == "active":
            for task_id in waiting:
                task = job.tasks.get(task_id)
                if task and task.state == "preparing" and task.run_token is not None:
                    self.start_run(job, task, node, task.run_token)
        self.state.wake()

    async def _run_release(self, job: Job, rec: NodeJobRecord) -> None:
        spec = job.release_spec
        node = self.state.node_of(job, rec.node_id)
        if spec is None or node is None:
            return
        limit = parse_duration("jobReleaseTask.maxWallClockTime", spec.get("maxWallClockTime"), RELEASE_LIMIT)
        rec.release = Execution(start_time=now())
        rec.release_state = "running"
        outcome, _, _ = await self._execute(job, node, spec.get("id", RELEASE_ID), spec, min(limit, RELEASE_LIMIT),
                                         (job.id, "#release", node.id))
        rec.release.end_time = now()
        rec.release.exit_code = outcome.exit_code
        rec.release.failure = outcome.failure
        rec.release_state = "completed"
        self.state.retention.keep(rec.release.end_time, retention_of("jobReleaseTask.retentionTime",
                                                                     spec.get("retentionTime")),
                                  job.id, RELEASE, node.id)

    # ----- ending jobs ----------------------------------------------------------------------------
