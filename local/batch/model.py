"""In-memory state of the emulated account and how each object looks on the wire."""

from __future__ import annotations

import itertools
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from local.batch.ids import IdMap
from local.batch.wire import fmt_duration, fmt_time, now

_etags = itertools.count(1)


def new_etag() -> str:
    return f"0x8DD{next(_etags):013X}"


@dataclass
class Stamped:
    """Common bookkeeping: creation time, last modified, eTag, state with its transition history."""

    state: str = "active"
    previous_state: str | None = None
    creation_time: datetime = field(default_factory=now)
    last_modified: datetime = field(default_factory=now)
    state_transition_time: datetime = field(default_factory=now)
    etag: str = field(default_factory=new_etag)

    def touch(self) -> None:
        self.last_modified = now()
        self.etag = new_etag()

    def set_state(self, state: str) -> None:
        if state != self.state:
            self.previous_state, self.state = self.state, state
            self.state_transition_time = now()
        self.touch()


@dataclass
class Node(Stamped):
    id: str = ""
    pool_id: str = ""
    root: Path = Path()
    slots: int = 1
    used_slots: int = 0
    running: set = field(default_factory=set)  # RunningTask keys (job_id, task_id)
    total_run: int = 0
    total_succeeded: int = 0
    recent: list = field(default_factory=list)
    boot_time: datetime = field(default_factory=now)
    # Bumped on reboot so that processes started before it are recognised as stale.
    generation: int = 0
    # Not on the wire: the node's agent process (local/batch/process.NodeAgent) and the part of the task
    # environment that is the same for every task on it.
    agent: Any = field(default=None, repr=False, compare=False)
    env: dict = field(default_factory=dict, repr=False, compare=False)
    dedicated: bool = True
    start_spec: dict | None = None  # the pool's startTask
    start_info: Execution | None = None
    start_state: str | None = None  # running, completed

    def wire(self, base_url: str) -> dict:
        out = self._wire(base_url)
        if self.start_spec is not None:
            out["startTask"] = self.start_spec
        if self.start_info is not None:
            info = self.start_info.wire()
            info.pop("requeueCount", None)
            out["startTaskInfo"] = {**info, "state": self.start_state}
        return out

    def _wire(self, base_url: str) -> dict:
        return {
            "id": self.id,
            "url": f"{base_url}/pools/{self.pool_id}/nodes/{self.id}",
            "state": self.state,
            "schedulingState": "enabled",
            "stateTransitionTime": fmt_time(self.state_transition_time),
            "lastBootTime": fmt_time(self.boot_time),
            "allocationTime": fmt_time(self.creation_time),
            "ipAddress": "127.0.0.1",
            "affinityId": f"TVM:{self.id}",
            "vmSize": "standard_d2s_v3",
            "totalTasksRun": self.total_run,
            "runningTasksCount": len(self.running),
            "runningTaskSlotsCount": self.used_slots,
            "totalTasksSucceeded": self.total_succeeded,
            "recentTasks": self.recent[-10:],
            "isDedicated": self.dedicated,
            "nodeAgentInfo": {"version": "1.11.0-emulator", "lastUpdateTime": fmt_time(self.boot_time)},
        }


@dataclass
class Pool(Stamped):
    id: str = ""
    spec: dict = field(default_factory=dict)
    nodes: dict[str, Node] = field(default_factory=IdMap)
    slots_per_node: int = 1
    target_nodes: int = 0

    def wire(self, base_url: str) -> dict:
        out = {k: v for k, v in self.spec.items() if k not in ("targetDedicatedNodes", "taskSlotsPerNode")}
        out.update({
            "id": self.id,
            "url": f"{base_url}/pools/{self.id}",
            "eTag": self.etag,
            "lastModified": fmt_time(self.last_modified),
            "creationTime": fmt_time(self.creation_time),
            "state": self.state,
            "stateTransitionTime": fmt_time(self.state_transition_time),
            "allocationState": "steady",
            "allocationStateTransitionTime": fmt_time(self.creation_time),
            "vmSize": self.spec.get("vmSize", "standard_d2s_v3"),
            "targetDedicatedNodes": self.target_nodes,
            "currentDedicatedNodes": len(self.nodes),
            "targetLowPriorityNodes": 0,
            "currentLowPriorityNodes": 0,
            "taskSlotsPerNode": self.slots_per_node,
            "enableAutoScale": False,
            "enableInterNodeCommunication": False,
            "taskSchedulingPolicy": self.spec.get("taskSchedulingPolicy") or {"nodeFillType": "spread"},
        })
        return out


@dataclass
class Execution:
    """What Batch reports in a task's executionInfo."""

    start_time: datetime | None = None
    end_time: datetime | None = None
    exit_code: int | None = None
    failure: dict | None = None
    retry_count: int = 0
    requeue_count: int = 0
    last_retry_time: datetime | None = None
    last_requeue_time: datetime | None = None

    @property
    def result(self) -> str | None:
        if self.end_time is None:
            return None
        return "failure" if self.failure else "success"

    def wire(self, include_retry: bool = True) -> dict:
        out: dict[str, Any] = {}
        if self.start_time:
            out["startTime"] = fmt_time(self.start_time)
        if self.end_time:
            out["endTime"] = fmt_time(self.end_time)
        if self.exit_code is not None:
            out["exitCode"] = self.exit_code
        if self.failure:
            out["failureInfo"] = self.failure
        if include_retry:
            out["retryCount"] = self.retry_count
            out["requeueCount"] = self.requeue_count
            if self.last_retry_time:
                out["lastRetryTime"] = fmt_time(self.last_retry_time)
            if self.last_requeue_time:
                out["lastRequeueTime"] = fmt_time(self.last_requeue_time)
        if self.result:
            out["result"] = self.result
        return out


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
