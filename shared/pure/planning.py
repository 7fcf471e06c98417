"""Turn a validated job request into the Batch REST bodies to submit. Pure: no I/O, time passed in.

The bodies are the Batch REST request bodies (camelCase, as on the wire); the Batch adapter sends them as
they are. Keeping them as plain data makes the plan easy to test and to hash.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from shared.node import lognames
from shared.pure import metadata
from shared.pure.request import (
    DependsOn,
    JobRequest,
    ParametricSweep,
    TaskSpec,
    UserIdentity,
    expand_tasks,
    sweep_ids,
)
from shared.pure.settings import PoolIdentity

PREP_ID = "jobpreparation"
RELEASE_ID = "jobrelease"
CHUNK = 100  # Batch's limit per add-task-collection call
RELEASE_WINDOW = timedelta(minutes=15)  # the longest a release task may run
# Batch ends the job itself this long after the deadline, in case the watchdog is not running.
BACKSTOP = timedelta(minutes=10)
UPLOADER_FILE = "log_uploader.py"
# Shipped beside the uploader: the naming rules it shares with the collector (shared/node/lognames.py).
NODE_FILES = (UPLOADER_FILE, "lognames.py")
CRASH_PSEUDO_NODE = lognames.TASKS_PSEUDO_NODE
NO_OP_PREP = "/bin/true"
# A job is created with onAllTasksComplete=noaction, so a half-filled job is not ended early; once every
# task is in, submission arms it with this.
WHILE_SUBMITTING = "noaction"
WHEN_SUBMITTED = "terminatejob"


@dataclass(frozen=True)
class Links:
    """What a job's nodes are given: the node-side files (name -> read SAS URL) and where they write.

    With upload_identity, logs_container_url is the plain container URL the pool's identity writes to, for
    the uploader and Batch's outputFiles alike. Without it, the uploader gets a create-only SAS, and
    outputFiles get task_output_url: Batch documents write permission for an outputFiles container SAS.
    """

    node_files: tuple[tuple[str, str], ...]
    logs_container_url: str
    upload_identity: PoolIdentity | None = None
    task_output_url: str | None = None


@dataclass(frozen=True)
class JobPlan:
    job_id: str
    job: dict
    deadline: datetime
    expected_tasks: int
    request: JobRequest
    links: Links

    def task_chunks(self, size: int = CHUNK) -> Iterator[list[dict]]:
        chunk: list[dict] = []
        for spec in expand_tasks(self.request):
            chunk.append(task_body(spec, self.request, self.job_id, self.links))
            if len(chunk) == size:
                yield chunk
                chunk = []
        if chunk:
            yield chunk


def _env(values: dict[str, str]) -> list[dict]:
    return [{"name": k, "value": v} for k, v in sorted(values.items())]


def _duration(value: timedelta | None) -> str | None:
    if value is None:
        return None
    seconds = int(value.total_seconds())
    return f"PT{seconds}S"


def _resource_files(files) -> list[dict]:
    return [f.model_dump(by_alias=True, exclude_none=True) for f in files]


def _constraints(max_retries: int, max_wall_clock: timedelta | None, retention: timedelta | None = None) -> dict:
    out: dict = {"maxTaskRetryCount": max_retries}
    if max_wall_clock is not None:
        out["maxWallClockTime"] = _duration(max_wall_clock)
    if retention is not None:
        out["retentionTime"] = _duration(retention)
    return out


def user_identity(identity: UserIdentity | None) -> dict | None:
    """Batch's wire form: {"username": ...} or {"autoUser": {"scope", "elevationLevel"}}."""
    if identity is None:
        return None
    if identity.user_name is not None:
        return {"username": identity.user_name}
    return {"autoUser": {"scope": identity.auto_user.scope, "elevationLevel": identity.auto_user.elevation_level}}


def _packages(refs) -> list[dict]:
    return [r.model_dump(by_alias=True, exclude_none=True) for r in refs]


def _user_outputs(files) -> list[dict]:
    out = []
    for f in files:
        container = {"containerUrl": f.container_url, **({"path": f.path} if f.path else {})}
        out.append({"filePattern": f.file_pattern, "destination": {"container": container},
                    "uploadOptions": {"uploadCondition": f.upload_condition.lower()}})
    return out


def depends_on(deps: DependsOn | None, sweep: ParametricSweep | None) -> dict | None:
    """Batch's dependsOn; the whole sweep as one id range when its ids are plain integers, else its ids."""
    if deps is None:
        return None
    ids = list(deps.task_ids)
    ranges = [{"start": r.start, "end": r.end} for r in deps.task_id_ranges]
    if deps.task_factory and sweep is not None:
        if sweep.integer_ids():
            ranges.append({"start": sweep.start, "end": sweep.end})
        else:
            ids.extend(sweep_ids(sweep))
    return {k: v for k, v in (("taskIds", ids), ("taskIdRanges", ranges)) if v}


def release_command(user_command: str | None) -> str:
    """Run the user's release command (not under a shell, as Batch would), then the uploader; keep the
    user's exit code, since the release task's result is theirs to read. The start time lets the uploader
    fit in what is left of the task's maxWallClock."""
    steps = ["export ORCHESTRATOR_RELEASE_STARTED=$(date +%s)"]
    if user_command:
        steps.append(f"{shlex.join(shlex.split(user_command))}; rc=$?")
    else:
        steps.append("rc=0")
    steps.append(f'python3 "$AZ_BATCH_TASK_WORKING_DIR/{UPLOADER_FILE}"')
    steps.append("exit $rc")
    return "/bin/bash -c " + shlex.quote("; ".join(steps))


def job_body(request: JobRequest, job_id: str, meta: metadata.JobMetadata, links: Links, timeout: timedelta) -> dict:
    prep = request.preparation
    release = request.release
    prep_body = {
        "id": PREP_ID,
        "commandLine": prep.command_line if prep else NO_OP_PREP,
        "resourceFiles": _resource_files(prep.resource_files) if prep else [],
        "environmentSettings": _env(prep.environment) if prep else [],
        "waitForSuccess": prep.wait_for_success if prep else True,
        "rerunOnNodeRebootAfterSuccess": prep.rerun_on_node_reboot_after_success if prep else True,
        "constraints": (_constraints(prep.max_retries, prep.max_wall_clock, prep.retention_time) if prep
                        else {"maxTaskRetryCount": 0}),
    }
    if prep and prep.user_identity:
        prep_body["userIdentity"] = user_identity(prep.user_identity)
    release_env = dict(release.environment) if release else {}
    if links.upload_identity is None:
        release_env["ORCHESTRATOR_LOGS_SAS_URL"] = links.logs_container_url
    else:
        release_env["ORCHESTRATOR_LOGS_CONTAINER_URL"] = links.logs_container_url
        release_env["ORCHESTRATOR_UPLOAD_CLIENT_ID"] = links.upload_identity.client_id
    release_wall_clock = min(release.max_wall_clock, RELEASE_WINDOW) if release else RELEASE_WINDOW
    release_env.update({
        "ORCHESTRATOR_RELEASE_MAX_SECONDS": str(int(release_wall_clock.total_seconds())),
        "ORCHESTRATOR_COLLECT_LOGS": json.dumps(list(request.collect.logs)),
        "ORCHESTRATOR_COLLECT_CRASHDUMPS": json.dumps(list(request.collect.crash_dumps)),
    })
    release_body = {
        "id": RELEASE_ID,
        "commandLine": release_command(release.command_line if release else None),
        "resourceFiles": [*(_resource_files(release.resource_files) if release else []),
                          *(_node_file(name, url, links) for name, url in links.node_files)],
        "environmentSettings": _env(release_env),
        "maxWallClockTime": _duration(release_wall_clock),
    }
    if release and release.retention_time:
        release_body["retentionTime"] = _duration(release.retention_time)
    if release and release.user_identity:
        release_body["userIdentity"] = user_identity(release.user_identity)
    return {
        "id": job_id,
        "poolInfo": {"poolId": request.pool_id},
        "priority": request.priority,
        "onAllTasksComplete": WHILE_SUBMITTING,
        "constraints": {"maxWallClockTime": _duration(timeout + BACKSTOP), "maxTaskRetryCount": 0},
        "commonEnvironmentSettings": _env(request.environment),
        "jobPreparationTask": prep_body,
        "jobReleaseTask": release_body,
        "usesTaskDependencies": request.uses_task_dependencies(),
        "metadata": metadata.to_items(metadata.encode(meta)),
    }


def task_body(spec: TaskSpec, request: JobRequest, job_id: str, links: Links) -> dict:
    body = {
        "id": spec.id,
        "commandLine": spec.command_line,
        "environmentSettings": _env(spec.environment),
        "resourceFiles": _resource_files(spec.resource_files),
        "constraints": _constraints(spec.max_retries, spec.max_wall_clock, spec.retention_time),
    }
    identity = user_identity(spec.user_identity)
    if identity:
        body["userIdentity"] = identity
    if spec.application_package_references:
        body["applicationPackageReferences"] = _packages(spec.application_package_references)
    deps = depends_on(spec.depends_on, request.task_factory)
    if deps:
        body["dependsOn"] = deps
    outputs = _user_outputs(spec.output_files)
    if request.collect.crash_dumps:
        # A failing task ships its own dumps, so a node lost before its release task loses nothing.
        outputs += [{
            "filePattern": _task_pattern(pattern, spec.id),
            "destination": {"container": _output_container(links, f"{job_id}/{CRASH_PSEUDO_NODE}/crashdumps/{spec.id}")},
            "uploadOptions": {"uploadCondition": "taskfailure"},
        } for pattern in request.collect.crash_dumps]
    if outputs:
        body["outputFiles"] = outputs
    return body


def _node_file(name: str, url: str, links: Links) -> dict:
    """A node-side file as a resource file: read with the pool's identity when it has one (no SAS)."""
    spec = {"httpUrl": url, "filePath": name}
    if links.upload_identity is not None:
        spec["identityReference"] = {"resourceId": links.upload_identity.resource_id}
    return spec


def credential_refusal(timeout: timedelta, lifetime: timedelta | None) -> str | None:
    """Why a job cannot run this long with the credentials its nodes would get, or None if it can."""
    if lifetime is None:
        return None
    needed = timeout + SAS_AFTER_DEADLINE  # from submission to the end of the last release task
    if needed > lifetime - timedelta(minutes=5):
        return (f"timeout: a job of {timeout} would outlive its upload SAS, which Azure limits to {lifetime.days} days "
                "for a user delegation SAS; use the pool identity (POOL_IDENTITY_*, the default in infra/) or a "
                "shorter timeout [timeout_exceeds_sas_lifetime]")
    return None


def _output_container(links: Links, path: str) -> dict:
    container = {"containerUrl": links.task_output_url or links.logs_container_url, "path": path}
    if links.upload_identity is not None:
        container["identityReference"] = {"resourceId": links.upload_identity.resource_id}
    return container


def _task_pattern(pattern: str, task_id: str) -> str:
    """Collect globs are relative to the job's folder on the node (workitems/{jobId}); outputFiles patterns
    are relative to the task's working directory, three levels below. `job-1/*/...` narrows to this task."""
    if pattern.startswith("/"):
        return pattern
    parts = pattern.split("/")
    if len(parts) > 2 and parts[0] == lognames.TASKS_DIR and parts[1] in ("*", "**"):
        parts[1] = task_id
    return "../../../" + "/".join(parts)


def plan(request: JobRequest, job_id: str, request_hash: str, now: datetime, links: Links) -> JobPlan:
    timeout = request.timeout
    deadline = now + timeout
    expected = request.task_count()
    prep = request.preparation
    meta = metadata.JobMetadata(deadline=deadline, request_hash=request_hash, expected_tasks=expected,
                                prep_gates_tasks=prep is None or prep.wait_for_success)
    return JobPlan(job_id=job_id, job=job_body(request, job_id, meta, links, timeout), deadline=deadline,
                   expected_tasks=expected, request=request, links=links)


# From a job's deadline to the end of its last release task, with a margin: how long its SASs live past it.
SAS_AFTER_DEADLINE = BACKSTOP + RELEASE_WINDOW + timedelta(minutes=5)


def sas_expiry(deadline: datetime) -> datetime:
    """Upload SAS tokens live until the last release task can have finished, and no longer."""
    return deadline + SAS_AFTER_DEADLINE
