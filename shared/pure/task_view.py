"""What the report page shows of every task, from one pass over tasks.jsonl in bounded memory.

A job may have 100,000 tasks, so nothing here keeps a row per task beyond MAX_BARS: the timeline is also
summed, as it streams, into per-node time buckets (a difference array, O(1) per task), and the page draws
those when there are too many tasks for a bar each. Tasks that were still running or never started when
the job ended are listed up to MAX_LISTED; successful tasks become duration percentiles.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from shared.pure.timefmt import parse_time

MAX_BARS = 2000  # tasks drawn one by one; a bigger job is drawn per node and time bucket
BUCKETS = 240  # time buckets across the plot (4 px each at the page's width)
MAX_LISTED = 200
OK, FAILED, RUNNING = "ok", "failed", "running"
# Batch's failureInfo code of a task that was still running when its job was terminated: ending the job
# ended it (https://learn.microsoft.com/rest/api/batchservice/task/get: executionInfo.failureInfo).
ENDED_WITH_JOB = "TaskEnded"


@dataclass(frozen=True)
class Bar:
    node_id: str
    start: float  # seconds since the view's origin
    end: float
    kind: str  # OK, FAILED or RUNNING (still running when the job ended)
    task_id: str
    exit_code: int | None = None


@dataclass
class NodeBuckets:
    partial: list[float] = field(default_factory=lambda: [0.0] * BUCKETS)
    diff: list[int] = field(default_factory=lambda: [0] * (BUCKETS + 1))
    failed: list[int] = field(default_factory=lambda: [0] * BUCKETS)
    tasks: int = 0

    def busy(self) -> list[float]:
        """Task-buckets of work per bucket (a bucket fully busy on 2 slots is 2.0)."""
        out, running = [], 0
        for b in range(BUCKETS):
            running += self.diff[b]
            out.append(self.partial[b] + running)
        return out


def _failed(line: Mapping[str, Any]) -> bool:
    return line.get("result") == "failure" or line.get("exitCode") not in (None, 0)


@dataclass
class TaskView:
    origin: float  # epoch seconds of the plot's left edge (the job's creation)
    span: float  # seconds across the plot
    total: int = 0
    bars: list[Bar] | None = field(default_factory=list)  # None once there were more than MAX_BARS
    buckets: dict[str, NodeBuckets] = field(default_factory=dict)
    never_started: list[str] = field(default_factory=list)
    never_started_total: int = 0
    running: list[Bar] = field(default_factory=list)
    running_total: int = 0
    _ok_durations: list[float] = field(default_factory=list)

    @property
    def bucket_seconds(self) -> float:
        return self.span / BUCKETS

    def add(self, line: Mapping[str, Any]) -> None:
        self.total += 1
        start, end = parse_time(line.get("start")), parse_time(line.get("end"))
        state = line.get("state")
        if start is None:
            if state in (None, "active", "preparing"):
                self.never_started_total += 1
                if len(self.never_started) < MAX_LISTED:
                    self.never_started.append(str(line.get("id")))
            return
        node = str(line.get("nodeId") or "?")
        first = start.timestamp() - self.origin
        # Still running at the end: Batch had not ended it, or ending the job did.
        still_running = end is None or line.get("failure") == ENDED_WITH_JOB
        last = (end.timestamp() - self.origin) if end else self.span
        kind = RUNNING if still_running else FAILED if _failed(line) else OK
        bar = Bar(node, first, max(last, first), kind, str(line.get("id")), line.get("exitCode"))
        if still_running:
            self.running_total += 1
            if len(self.running) < MAX_LISTED:
                self.running.append(bar)
        elif kind == OK:
            self._ok_durations.append(max(last - first, 0.0))
        if self.bars is not None:
            self.bars.append(bar)
            if len(self.bars) > MAX_BARS:
                self.bars = None
        self._bucket(bar)

    def _bucket(self, bar: Bar) -> None:
        node = self.buckets.setdefault(bar.node_id, NodeBuckets())
        node.tasks += 1
        scale = BUCKETS / self.span if self.span > 0 else 0.0
        first = min(max(bar.start * scale, 0.0), BUCKETS - 1e-9)
        last = min(max(bar.end * scale, first), BUCKETS - 1e-9)
        b0, b1 = int(first), int(last)
        if b0 == b1:
            node.partial[b0] += last - first
        else:
            node.partial[b0] += b0 + 1 - first
            node.partial[b1] += last - b1
            node.diff[b0 + 1] += 1
            node.diff[b1] -= 1
        if bar.kind == FAILED:
            node.failed[b1] += 1

    def ok_percentiles(self) -> dict[str, float] | None:
        """Duration percentiles (seconds) of the tasks that succeeded."""
        values = sorted(self._ok_durations)
        if not values:
            return None
        if len(values) == 1:
            return {"count": 1, "p50": values[0], "p90": values[0], "p99": values[0], "max": values[0]}
        cuts = statistics.quantiles(values, n=100, method="inclusive")
        return {"count": len(values), "p50": cuts[49], "p90": cuts[89], "p99": cuts[98], "max": values[-1]}


def view_window(outcome: Mapping[str, Any] | None) -> tuple[float, float] | None:
    """(origin, span) of the plot from the job's outcome: creation to end; None without both."""
    outcome = outcome or {}
    first = parse_time(outcome.get("createdAt") or outcome.get("startedAt"))
    last = parse_time(outcome.get("endedAt") or outcome.get("recordedAt"))
    if first is None or last is None:
        return None
    return first.timestamp(), max((last - first).total_seconds(), 1.0)


def build_view(outcome: Mapping[str, Any] | None, lines: Iterable[Mapping[str, Any]]) -> TaskView | None:
    window = view_window(outcome)
    if window is None:
        return None
    view = TaskView(*window)
    for line in lines:
        view.add(line)
    return view
