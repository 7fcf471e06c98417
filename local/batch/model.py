"""In-memory state of the emulated account and how each object looks on the wire.

Pools and nodes live in poolmodel.py, the shared bookkeeping in stamped.py; both are re-exported here.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from local.batch.ids import IdMap
from local.batch.poolmodel import Node, Pool
from local.batch.stamped import Execution, Stamped, new_etag
from local.batch.wire import fmt_duration, fmt_time

__all__ = ["Execution", "Job", "Node", "NodeJobRecord", "Pool", "Stamped", "Task", "new_etag"]


@dataclass
class Task(Stamped):
    id: str = ""
    job_id: str = ""
    spec: dict = field(default_factory=dict)
    seq: int = 0
    max_wall_clock: timedelta | None = None
    max_retries: int = 0
    required_slots: int = 1
    execution: Execution = field(default_factory=Execution)
    node_id: str | None = None
    pool_id: str | None = None
    # Identifies the current placement; a reboot or terminate that takes the task away replaces it,
    # so the coroutine running the old placement knows to leave the task alone.
    run_token: object | None = None
    user_terminated: bool = False
    # Task dependencies (dependencies.py): the folded parent ids still awaited, and whether this task's own
    # completion satisfied its dependants.
    waiting_on: set | None = None
    satisfies: bool = False

    def wire(self, base_url: str, root_rel: str | None = None) -> dict:
        out = dict(self.spec)
        out.update({
            "id": self.id,
            "url": f"{base_url}/jobs/{self.job_id}/tasks/{self.id}",
            "eTag": self.etag,
            "creationTime": fmt_time(self.creation_time),
            "lastModified": fmt_time(self.last_modified),
            "state": self.state,
            "stateTransitionTime": fmt_time(self.state_transition_time),
            "requiredSlots": self.required_slots,
            "constraints": {
                "maxWallClockTime": fmt_duration(self.max_wall_clock),
                "retentionTime": (self.spec.get("constraints") or {}).get("retentionTime", "P7D"),
                "maxTaskRetryCount": self.max_retries,
            },
            "executionInfo": self.execution.wire(),
        })
        if self.previous_state:
            out["previousState"] = self.previous_state
            out["previousStateTransitionTime"] = fmt_time(self.state_transition_time)
        if self.node_id:
            node_url = f"{base_url}/pools/{self.pool_id}/nodes/{self.node_id}"
            out["nodeInfo"] = {
                "affinityId": f"TVM:{self.node_id}",
                "nodeUrl": node_url,
                "poolId": self.pool_id,
                "nodeId": self.node_id,
                "taskRootDirectory": root_rel,
                "taskRootDirectoryUrl": f"{node_url}/files/{root_rel}" if root_rel else None,
            }
        return out


@dataclass
class NodeJobRecord:
    """Per (job, node): the job preparation and release task runs, as in jobpreparationandreleasetaskstatus."""

    node_id: str
    pool_id: str
    prep: Execution = field(default_factory=Execution)
    prep_state: str | None = None  # None (never started), running, completed
    release: Execution | None = None
    release_state: str | None = None
    # Set when the node's prep run is void (reboot/reimage): it must run again before the next task.
    prep_needed: bool = True
    ineligible: bool = False
    waiting: list = field(default_factory=list)  # task ids in `preparing` on this node
    ran_tasks: bool = False

    @property
    def prep_succeeded(self) -> bool:
        return self.prep_state == "completed" and not self.prep.failure


@dataclass
class Job(Stamped):
    id: str = ""
    spec: dict = field(default_factory=dict)
    seq: int = 0
    pool_id: str = ""
    priority: int = 0
    on_all_tasks_complete: str = "noaction"
    max_wall_clock: timedelta | None = None
    max_task_retries: int = 0
    tasks: dict[str, Task] = field(default_factory=IdMap)
    pending: deque = field(default_factory=deque)  # ids of active tasks, in the order they run
    running: int = 0  # tasks holding a slot (preparing or running)
    finishing: Any = None  # the asyncio.Task ending the job (kill tasks, run release tasks)
    wall_clock_timer: Any = None
    nodes: dict[str, NodeJobRecord] = field(default_factory=dict)
    dependants: dict[str, list] = field(default_factory=dict)  # folded parent id -> ids of tasks waiting on it
    start_time: datetime | None = None
    end_time: datetime | None = None
    terminate_reason: str | None = None
    task_seq: int = 0
    counts: dict = field(default_factory=lambda: {"active": 0, "running": 0, "completed": 0,
                                                   "succeeded": 0, "failed": 0})
    slot_counts: dict = field(default_factory=lambda: {"active": 0, "running": 0, "completed": 0,
                                                        "succeeded": 0, "failed": 0})

    @property
    def prep_spec(self) -> dict | None:
        return self.spec.get("jobPreparationTask")

    @property
    def release_spec(self) -> dict | None:
        return self.spec.get("jobReleaseTask")

    def wire(self, base_url: str) -> dict:
        out = dict(self.spec)
        constraints = dict(out.get("constraints") or {})
        constraints["maxWallClockTime"] = fmt_duration(self.max_wall_clock)
        constraints["maxTaskRetryCount"] = self.max_task_retries
        info: dict[str, Any] = {"startTime": fmt_time(self.start_time), "poolId": self.pool_id}
        if self.end_time:
            info["endTime"] = fmt_time(self.end_time)
        if self.terminate_reason:
            info["terminateReason"] = self.terminate_reason
        out.update({
            "id": self.id,
            "url": f"{base_url}/jobs/{self.id}",
            "eTag": self.etag,
            "lastModified": fmt_time(self.last_modified),
            "creationTime": fmt_time(self.creation_time),
            "state": self.state,
            "stateTransitionTime": fmt_time(self.state_transition_time),
            "priority": self.priority,
            "maxParallelTasks": out.get("maxParallelTasks", -1),
            "allowTaskPreemption": out.get("allowTaskPreemption", False),
            "usesTaskDependencies": out.get("usesTaskDependencies", False),
            "constraints": constraints,
            "poolInfo": {"poolId": self.pool_id},
            "onAllTasksComplete": self.on_all_tasks_complete,
            "onTaskFailure": out.get("onTaskFailure", "noaction"),
            "metadata": out.get("metadata") or [],
            "executionInfo": info,
        })
        if self.previous_state:
            out["previousState"] = self.previous_state
            out["previousStateTransitionTime"] = fmt_time(self.state_transition_time)
        return out
