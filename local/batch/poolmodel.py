"""Pools and their compute nodes as the emulator holds them, and how they look on the wire."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from local.batch.ids import IdMap
from local.batch.stamped import Execution, Stamped
from local.batch.wire import fmt_time, now


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
    # Application packages deployed or being deployed: (folded app id, version) -> asyncio future of the folder.
    packages: dict = field(default_factory=dict, repr=False, compare=False)

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
    target_dedicated: int = 0
    target_low_priority: int = 0
    allocation_state: str = "steady"  # steady, resizing, stopping
    allocation_time: datetime = field(default_factory=now)
    next_index: int = 0  # node ids are never reused within a pool
    resize_errors: list = field(default_factory=list)

    def counts(self) -> tuple[int, int]:
        """(dedicated, low-priority) nodes in the pool now."""
        dedicated = sum(1 for n in self.nodes.values() if n.dedicated)
        return dedicated, len(self.nodes) - dedicated

    def set_allocation(self, state: str) -> None:
        if state != self.allocation_state:
            self.allocation_state, self.allocation_time = state, now()
        self.touch()

    def wire(self, base_url: str) -> dict:
        hidden = ("targetDedicatedNodes", "targetLowPriorityNodes", "taskSlotsPerNode", "enableAutoScale")
        out = {k: v for k, v in self.spec.items() if k not in hidden}
        if out.get("userAccounts"):  # Batch never gives a user account's password back
            out["userAccounts"] = [{k: v for k, v in a.items() if k != "password"} for a in out["userAccounts"]]
        dedicated, low = self.counts()
        autoscale = bool(self.spec.get("enableAutoScale"))
        out.update({
            "id": self.id,
            "url": f"{base_url}/pools/{self.id}",
            "eTag": self.etag,
            "lastModified": fmt_time(self.last_modified),
            "creationTime": fmt_time(self.creation_time),
            "state": self.state,
            "stateTransitionTime": fmt_time(self.state_transition_time),
            "allocationState": self.allocation_state,
            "allocationStateTransitionTime": fmt_time(self.allocation_time),
            "vmSize": self.spec.get("vmSize", "standard_d2s_v3"),
            "targetDedicatedNodes": self.target_dedicated,
            "currentDedicatedNodes": dedicated,
            "targetLowPriorityNodes": self.target_low_priority,
            "currentLowPriorityNodes": low,
            "taskSlotsPerNode": self.slots_per_node,
            "enableAutoScale": autoscale,
            "enableInterNodeCommunication": False,
            "taskSchedulingPolicy": self.spec.get("taskSchedulingPolicy") or {"nodeFillType": "spread"},
        })
        if autoscale:
            out.setdefault("autoScaleEvaluationInterval", "PT15M")
            out["autoScaleRun"] = {"timestamp": fmt_time(self.allocation_time), "results":
                                   f"$TargetDedicatedNodes={self.target_dedicated};"
                                   f"$TargetLowPriorityNodes={self.target_low_priority}"}
        if self.resize_errors:
            out["resizeErrors"] = self.resize_errors
        return out
