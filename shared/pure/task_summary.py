"""What a job's tasks did, summed up once when the job ends, from one pass over Batch's task list.

The report keeps the failed tasks in full up to MAX_FAILED_LISTED (all of them go to tasks.jsonl), the
rest as counts, per node and in all, and percentiles of how long the tasks took.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from shared.pure.values import TaskResult, iso

MAX_FAILED_LISTED = 500


def task_line(task: TaskResult) -> dict[str, Any]:
    """One task in tasks.jsonl (and in the report's failed list)."""
    return {"id": task.id, "state": task.state, "nodeId": task.node_id, "exitCode": task.exit_code,
            "result": task.result, "retries": task.retry_count, "start": iso(task.start_time),
            "end": iso(task.end_time), "failure": task.failure}


def _brief(line: dict[str, Any]) -> dict[str, Any]:
    """A failed task as the report lists it: what is said by its being listed is left out."""
    return {k: v for k, v in line.items() if v is not None and not (k == "state" and v == "completed")
            and not (k == "result" and v == "failure")}


def failed(task: TaskResult) -> bool:
    return task.result == "failure" or (task.exit_code not in (None, 0))


@dataclass
class NodeTasks:
    run: int = 0
    failed: int = 0


@dataclass
class TaskSummary:
    states: Counter = field(default_factory=Counter)
    total: int = 0
    failed_total: int = 0
    failed_listed: list[dict[str, Any]] = field(default_factory=list)
    never_started: int = 0
    per_node: dict[str, NodeTasks] = field(default_factory=dict)
    _durations: list[float] = field(default_factory=list)

    def add(self, task: TaskResult) -> None:
        self.total += 1
        self.states[task.state] += 1
        if task.start_time is None and task.state in ("active", "preparing"):
            self.never_started += 1
        if task.node_id:
            node = self.per_node.setdefault(task.node_id, NodeTasks())
            node.run += 1
            node.failed += failed(task)
        if failed(task):
            self.failed_total += 1
            if len(self.failed_listed) < MAX_FAILED_LISTED:
                self.failed_listed.append(_brief(task_line(task)))
        if task.start_time and task.end_time:
            self._durations.append((task.end_time - task.start_time).total_seconds())

    def durations(self) -> dict[str, float | int] | None:
        values = sorted(self._durations)
        if not values:
            return None
        if len(values) == 1:
            only = round(values[0], 3)
            return {"count": 1, "p50": only, "p90": only, "p99": only, "max": only}
        cuts = statistics.quantiles(values, n=100, method="inclusive")
        return {"count": len(values), "p50": round(cuts[49], 3), "p90": round(cuts[89], 3),
                "p99": round(cuts[98], 3), "max": round(values[-1], 3)}

    def to_dict(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "states": dict(sorted(self.states.items())),
            "failedTotal": self.failed_total,
            "failed": list(self.failed_listed),
            "failedListed": len(self.failed_listed),
            "neverStarted": self.never_started,
            "durationSeconds": self.durations(),
            "perNode": {node: {"run": n.run, "failed": n.failed} for node, n in sorted(self.per_node.items())},
        }


def summarize(tasks: Iterable[TaskResult]) -> TaskSummary:
    summary = TaskSummary()
    for task in tasks:
        summary.add(task)
    return summary
