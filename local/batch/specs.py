"""Request bodies to model objects: required properties, id rules and value checks, as Batch answers them.

Unknown properties are kept out of the stored spec rather than refused: newer SDKs send fields this
emulator does not know, and Batch itself ignores what an older api-version does not define.
"""

from __future__ import annotations

from datetime import timedelta

from local.batch.errors import invalid_property, missing_property
from local.batch.identity import check_identity, check_user_accounts
from local.batch.model import Job, Pool, Task
from local.batch.packages import check_refs
from local.batch.poolspec import node_targets, refuse_unsupported
from local.batch.starttask import start_task_spec
from local.batch.wire import check_id, name_values, optional, parse_duration, require

MAX_COMMAND_LINE = 8191
TASK_KEYS = frozenset({
    "id", "displayName", "commandLine", "containerSettings", "exitConditions", "resourceFiles", "outputFiles",
    "environmentSettings", "affinityInfo", "constraints", "requiredSlots", "userIdentity", "multiInstanceSettings",
    "dependsOn", "applicationPackageReferences", "authenticationTokenSettings",
})
JOB_KEYS = frozenset({
    "id", "displayName", "usesTaskDependencies", "priority", "allowTaskPreemption", "maxParallelTasks",
    "constraints", "jobManagerTask", "jobPreparationTask", "jobReleaseTask", "commonEnvironmentSettings",
    "poolInfo", "onAllTasksComplete", "onTaskFailure", "networkConfiguration", "metadata",
})
POOL_KEYS = frozenset({
    "id", "displayName", "vmSize", "virtualMachineConfiguration", "resizeTimeout", "resourceTags",
    "targetDedicatedNodes", "targetLowPriorityNodes", "enableAutoScale", "autoScaleFormula",
    "autoScaleEvaluationInterval", "enableInterNodeCommunication", "networkConfiguration", "startTask",
    "certificateReferences", "applicationPackageReferences", "taskSlotsPerNode", "taskSchedulingPolicy",
    "userAccounts", "metadata", "mountConfiguration", "targetNodeCommunicationMode", "upgradePolicy",
    "identity",
})
PREP_KEYS = frozenset({
    "id", "commandLine", "containerSettings", "resourceFiles", "environmentSettings", "constraints",
    "waitForSuccess", "userIdentity", "rerunOnNodeRebootAfterSuccess",
})
RELEASE_KEYS = frozenset({
    "id", "commandLine", "containerSettings", "resourceFiles", "environmentSettings", "maxWallClockTime",
    "retentionTime", "userIdentity",
})
ON_ALL_COMPLETE = ("noaction", "terminatejob")
RELEASE_LIMIT = timedelta(minutes=15)


def _pick(body: dict, keys: frozenset[str]) -> dict:
    return {k: v for k, v in body.items() if k in keys and v is not None}


def _command_line(prefix: str, body: dict) -> str:
    value = require(body, "commandLine")
    if not value.strip():
        raise invalid_property(f"{prefix}commandLine", value, "the command line must not be empty")
    if len(value) > MAX_COMMAND_LINE:
        raise invalid_property(f"{prefix}commandLine", value[:64] + "...",
                               f"the command line is longer than {MAX_COMMAND_LINE} characters")
    return value


def _resource_files(name: str, items) -> list[dict]:
    if items is None:
        return []
    if not isinstance(items, list):
        raise invalid_property(name, items, "expected a list")
    for item in items:
        if not isinstance(item, dict):
            raise invalid_property(name, item, "each resource file must be an object")
        sources = [k for k in ("httpUrl", "storageContainerUrl", "autoStorageContainerName") if item.get(k)]
        if len(sources) != 1:
            raise invalid_property(name, "", "exactly one of httpUrl, storageContainerUrl, "
                                             "autoStorageContainerName is required")
    return items


def _identity(spec: dict, name: str, body: dict) -> None:
    identity = check_identity(name, body.get("userIdentity"))
    if identity is None:
        spec.pop("userIdentity", None)
    else:
        spec["userIdentity"] = identity


def _retries(name: str, body: dict) -> int:
    value = optional(body, "maxTaskRetryCount", int, 0)
    if value < -1:
        raise invalid_property(name, value, "must be -1 (unlimited) or a non-negative number")
    return value


def pool_from_body(body: dict) -> Pool:
    if not isinstance(body, dict):
        raise invalid_property("body", body, "expected a JSON object")
    pool_id = check_id("id", body.get("id"))
    require(body, "vmSize")
    refuse_unsupported(body)
    dedicated, low = node_targets(body)
    slots = optional(body, "taskSlotsPerNode", int, 1)
    if slots < 1 or slots > 256:
        raise invalid_property("taskSlotsPerNode", slots, "must be between 1 and 256")
    spec = _pick(body, POOL_KEYS)
    refs = check_refs("applicationPackageReferences", body.get("applicationPackageReferences"))
    if refs:
        spec["applicationPackageReferences"] = refs
    accounts = check_user_accounts(body.get("userAccounts"))
    if accounts:
        spec["userAccounts"] = accounts
    start = start_task_spec(body.get("startTask"))
    if start is not None:
        spec["startTask"] = start
    return Pool(id=pool_id, spec=spec, target_dedicated=dedicated, target_low_priority=low, slots_per_node=slots,
                state="active")


def _prep(body) -> dict | None:
    if body is None:
        return None
    if not isinstance(body, dict):
        raise invalid_property("jobPreparationTask", body, "expected an object")
    spec = _pick(body, PREP_KEYS)
    if body.get("containerSettings"):
        raise invalid_property("jobPreparationTask.containerSettings", "", "containers are not supported by the emulator")
    spec["id"] = check_id("jobPreparationTask.id", body.get("id") or "jobpreparation")
    spec["commandLine"] = _command_line("jobPreparationTask.", body)
    spec["resourceFiles"] = _resource_files("jobPreparationTask.resourceFiles", body.get("resourceFiles"))
    spec["environmentSettings"] = name_values("jobPreparationTask.environmentSettings",
                                              body.get("environmentSettings"))
    constraints = body.get("constraints") or {}
    parse_duration("jobPreparationTask.constraints.maxWallClockTime", constraints.get("maxWallClockTime"))
    parse_duration("jobPreparationTask.constraints.retentionTime", constraints.get("retentionTime"))
    _retries("jobPreparationTask.constraints.maxTaskRetryCount", constraints)
    _identity(spec, "jobPreparationTask.userIdentity", body)
    spec["waitForSuccess"] = optional(body, "waitForSuccess", bool, True)
    spec["rerunOnNodeRebootAfterSuccess"] = optional(body, "rerunOnNodeRebootAfterSuccess", bool, True)
    return spec


def _release(body, has_prep: bool) -> dict | None:
    if body is None:
        return None
    if not has_prep:
        raise invalid_property("jobReleaseTask", "", "a job release task needs a job preparation task")
    if not isinstance(body, dict):
        raise invalid_property("jobReleaseTask", body, "expected an object")
    spec = _pick(body, RELEASE_KEYS)
    if body.get("containerSettings"):
        raise invalid_property("jobReleaseTask.containerSettings", "", "containers are not supported by the emulator")
    spec["id"] = check_id("jobReleaseTask.id", body.get("id") or "jobrelease")
    spec["commandLine"] = _command_line("jobReleaseTask.", body)
    spec["resourceFiles"] = _resource_files("jobReleaseTask.resourceFiles", body.get("resourceFiles"))
    spec["environmentSettings"] = name_values("jobReleaseTask.environmentSettings", body.get("environmentSettings"))
    _identity(spec, "jobReleaseTask.userIdentity", body)
    parse_duration("jobReleaseTask.retentionTime", body.get("retentionTime"))
    limit = parse_duration("jobReleaseTask.maxWallClockTime", body.get("maxWallClockTime"), RELEASE_LIMIT)
    if limit > RELEASE_LIMIT:
        raise invalid_property("jobReleaseTask.maxWallClockTime", body.get("maxWallClockTime"),
                               "the job release task may run for at most 15 minutes (PT15M)")
    return spec


def job_from_body(body: dict) -> Job:
    if not isinstance(body, dict):
        raise invalid_property("body", body, "expected a JSON object")
    job_id = check_id("id", body.get("id"))
    pool_info = body.get("poolInfo")
    if not isinstance(pool_info, dict):
        raise missing_property("poolInfo")
    if body.get("jobManagerTask"):
        raise invalid_property("jobManagerTask", "", "job manager tasks are not supported by the emulator")
    if pool_info.get("autoPoolSpecification") and not pool_info.get("poolId"):
        raise invalid_property("poolInfo.autoPoolSpecification", "", "auto pools are not supported by the emulator")
    pool_id = check_id("poolInfo.poolId", pool_info.get("poolId"))
    spec = _pick(body, JOB_KEYS)
    priority = optional(body, "priority", int, 0)
    if not -1000 <= priority <= 1000:
        raise invalid_property("priority", priority, "must be between -1000 and 1000")
    on_all = optional(body, "onAllTasksComplete", str, "noaction")
    if on_all not in ON_ALL_COMPLETE:
        raise invalid_property("onAllTasksComplete", on_all, "must be noaction or terminatejob")
    constraints = body.get("constraints") or {}
    if not isinstance(constraints, dict):
        raise invalid_property("constraints", constraints, "expected an object")
    wall = parse_duration("constraints.maxWallClockTime", constraints.get("maxWallClockTime"))
    retries = _retries("constraints.maxTaskRetryCount", constraints)
    prep = _prep(body.get("jobPreparationTask"))
    release = _release(body.get("jobReleaseTask"), prep is not None)
    if prep is not None:
        spec["jobPreparationTask"] = prep
    if release is not None:
        spec["jobReleaseTask"] = release
    if prep and release and prep["id"] == release["id"]:
        raise invalid_property("jobReleaseTask.id", release["id"], "must differ from the job preparation task id")
    spec["commonEnvironmentSettings"] = name_values("commonEnvironmentSettings", body.get("commonEnvironmentSettings"))
    spec["metadata"] = name_values("metadata", body.get("metadata"))
    spec["poolInfo"] = {"poolId": pool_id}
    return Job(id=job_id, spec=spec, pool_id=pool_id, priority=priority, on_all_tasks_complete=on_all,
               max_wall_clock=wall, max_task_retries=retries, state="active")


def task_from_body(body: dict, job: Job) -> Task:
    task_id = check_id("id", body.get("id"))
    spec = _pick(body, TASK_KEYS)
    spec["commandLine"] = _command_line("", body)
    spec["resourceFiles"] = _resource_files("resourceFiles", body.get("resourceFiles"))
    spec["environmentSettings"] = name_values("environmentSettings", body.get("environmentSettings"))
    _identity(spec, "userIdentity", body)
    refs = check_refs("applicationPackageReferences", body.get("applicationPackageReferences"))
    if refs:
        spec["applicationPackageReferences"] = refs
    if body.get("containerSettings"):
        raise invalid_property("containerSettings", "", "containers are not supported by the emulator: tasks run "
                               "as host processes")
    if body.get("multiInstanceSettings"):
        raise invalid_property("multiInstanceSettings", "", "multi-instance tasks are not supported by the emulator")
    constraints = body.get("constraints") or {}
    if not isinstance(constraints, dict):
        raise invalid_property("constraints", constraints, "expected an object")
    wall = parse_duration("constraints.maxWallClockTime", constraints.get("maxWallClockTime"))
    parse_duration("constraints.retentionTime", constraints.get("retentionTime"))
    retries = _retries("constraints.maxTaskRetryCount", constraints) if "maxTaskRetryCount" in constraints \
        else job.max_task_retries
    slots = optional(body, "requiredSlots", int, 1)
    if slots < 1:
        raise invalid_property("requiredSlots", slots, "must be at least 1")
    return Task(id=task_id, job_id=job.id, spec=spec, max_wall_clock=wall, max_retries=retries,
                required_slots=slots, state="active")
