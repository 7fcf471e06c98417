"""Task dependencies: a task with dependsOn waits in `active` until every parent has completed and satisfied it.

https://learn.microsoft.com/azure/batch/batch-task-dependencies: a parent satisfies its dependants when it
succeeds, or when it fails and its exitConditions give dependencyAction `satisfy`; otherwise they stay blocked.
The job keeps an index from each parent id to the tasks waiting on it, so a completion releases its own
dependants without a scan of the job's tasks, and a blocked task never enters the scheduler's queue.
"""

from __future__ import annotations

from local.batch.errors import BatchError, invalid_property
from local.batch.ids import fold
from local.batch.model import Job, Task

MAX_TASK_IDS_CHARS = 64_000
# Ranges are expanded to ids; beyond this many the emulator refuses rather than hold millions of entries.
MAX_RANGE_IDS = 1_000_000
_UPLOAD_CODES = frozenset({"FileUploadFailed"})
# Failures without an exit code that are not pre-processing errors (a task that could not start: its resource
# files or its command): the task was ended rather than failing to start.
_ENDED_CODES = frozenset({"TaskEnded", "MaxWallClockTimeExpiry", "NodeAgentFailed"})


def parents_of(spec: dict, job: Job) -> set[str] | None:
    """The folded ids of the tasks a new task depends on, or None if it has no dependsOn."""
    depends = spec.get("dependsOn")
    if not depends:
        return None
    if not job.spec.get("usesTaskDependencies"):
        raise BatchError(409, "TaskDependenciesNotSpecifiedOnJob", "The task depends on other tasks, but its job "
                         "does not use task dependencies (usesTaskDependencies is false).", JobId=job.id)
    if not isinstance(depends, dict):
        raise invalid_property("dependsOn", depends, "expected an object")
    ids = depends.get("taskIds") or []
    if not isinstance(ids, list) or not all(isinstance(i, str) and i for i in ids):
        raise invalid_property("dependsOn.taskIds", ids, "expected a list of task ids")
    if sum(len(i) for i in ids) > MAX_TASK_IDS_CHARS:
        raise BatchError(400, "TaskDependencyListTooLong", "The task ids the task depends on are longer than "
                         f"{MAX_TASK_IDS_CHARS} characters together; use taskIdRanges instead.")
    parents = {fold(i) for i in ids}
    total = 0
    for item in depends.get("taskIdRanges") or []:
        start, end = (item or {}).get("start"), (item or {}).get("end")
        if not isinstance(start, int) or not isinstance(end, int) or start > end or start < 0:
            raise invalid_property("dependsOn.taskIdRanges", item, "expected {start, end} with 0 <= start <= end")
        total += end - start + 1
        if total > MAX_RANGE_IDS:
            raise invalid_property("dependsOn.taskIdRanges", item, f"the emulator does not support ranges "
                                   f"covering more than {MAX_RANGE_IDS} task ids")
        parents.update(str(n) for n in range(start, end + 1))
    return parents


def register(job: Job, task: Task, parents: set[str]) -> bool:
    """Index the task under the parents that have not satisfied it yet; True if it must wait."""
    waiting = set()
    for parent in parents:
        found = job.tasks.get(parent)
        if found is None or not found.satisfies:
            waiting.add(parent)
            job.dependants.setdefault(parent, []).append(task.id)
    task.waiting_on = waiting
    return bool(waiting)


def dependency_action(spec: dict, exit_code: int | None, failure: dict | None) -> str:
    """`satisfy` or `block`: what the task's exitConditions say its dependants get from this outcome."""
    conditions = spec.get("exitConditions") or {}
    options = None
    if exit_code is not None:
        options = next((c.get("exitOptions") for c in conditions.get("exitCodes") or []
                        if c.get("code") == exit_code), None)
        if options is None:
            options = next((r.get("exitOptions") for r in conditions.get("exitCodeRanges") or []
                            if r.get("start", 0) <= exit_code <= r.get("end", -1)), None)
    if options is None and failure is not None:
        if failure.get("code") in _UPLOAD_CODES:
            options = conditions.get("fileUploadError")
        elif exit_code is None and failure.get("code") not in _ENDED_CODES:
            options = conditions.get("preProcessingError")
    if options is None and (failure is not None or exit_code not in (0, None)):
        options = conditions.get("default")
    action = (options or {}).get("dependencyAction")
    if action in ("satisfy", "block"):
        return action
    return "satisfy" if failure is None else "block"


def completed(job: Job, task: Task) -> list[Task]:
    """Record a parent's outcome; the dependants it leaves with nothing more to wait for."""
    if not job.spec.get("usesTaskDependencies"):
        return []  # no task of the job can depend on it: the common case costs one lookup
    info = task.execution
    task.satisfies = dependency_action(task.spec, info.exit_code, info.failure) == "satisfy"
    if not task.satisfies:
        return []
    ready = []
    for dependant_id in job.dependants.pop(fold(task.id), ()):
        dependant = job.tasks.get(dependant_id)
        if dependant is None or not dependant.waiting_on:
            continue
        dependant.waiting_on.discard(fold(task.id))
        if not dependant.waiting_on and dependant.state == "active":
            ready.append(dependant)
    return ready
