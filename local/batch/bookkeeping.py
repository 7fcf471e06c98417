"""The counters that must stay in step whenever a task changes state or takes or gives back a slot.

Job task and slot counts, node slots and node states are kept up to date as things happen rather than
recomputed when read, so that task counts stay cheap with thousands of tasks in a job; these functions
are what keeps them in step with each other.
"""

from __future__ import annotations

from local.batch.model import Job, Node, Task


def _buckets(task: Task) -> list[str]:
    if task.state == "completed":
        return ["completed", "failed" if task.execution.failure else "succeeded"]
    return ["running" if task.state in ("running", "preparing") else "active"]


def count(job: Job, task: Task, sign: int) -> None:
    for bucket in _buckets(task):
        job.counts[bucket] += sign
        job.slot_counts[bucket] += sign * task.required_slots


def set_task_state(job: Job, task: Task, state: str) -> None:
    count(job, task, -1)
    task.set_state(state)
    count(job, task, +1)


def occupy(job: Job, task: Task, node: Node) -> object:
    """Give the task its slots on the node; returns the placement's new run token."""
    node.running.add((job.id, task.id))
    node.used_slots += task.required_slots
    job.running += 1
    if node.state == "idle":
        node.set_state("running")
    task.node_id, task.pool_id = node.id, node.pool_id
    task.run_token = token = object()
    return token


def unplace(job: Job, task: Task, node: Node) -> None:
    """Undo `occupy` (harmless if the task no longer holds a slot there) and void its run token."""
    if (job.id, task.id) in node.running:
        node.running.discard((job.id, task.id))
        node.used_slots -= task.required_slots
        job.running -= 1
    task.run_token = None
    rec = job.nodes.get(node.id)
    if rec and task.id in rec.waiting:
        rec.waiting.remove(task.id)
    if node.state == "running" and not node.running:
        node.set_state("idle")
