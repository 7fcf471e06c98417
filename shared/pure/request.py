"""Job request v1: the one pydantic model that validates requests and writes the published schema.

Run `python -m shared.flows.schema_file --write schemas/job-request.v1.json` after changing it.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator, Mapping
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

from shared.pure.duration import DURATION_PATTERN, format_duration, parse_duration

SCHEMA_ID = "https://batch-orchestrator.local/schemas/job-request.v1.json"
MAX_TASKS = 100_000
MAX_COMMAND_LINE = 8191  # Batch's limit on commandLine
MAX_RELEASE_WALL_CLOCK = timedelta(minutes=15)
# A deadline past a year is a typo more often than a plan, and every date computed from it (Batch's
# backstop, the SAS expiry, retention) must stay far from datetime's range.
MAX_TIMEOUT = timedelta(days=365)
MAX_ENV_VARS = 200
MAX_RETRIES = 100
RESERVED_TASK_IDS = frozenset({"jobpreparation", "jobrelease"})
# Folders of job-reports that are not jobs (shared.store, shared.blob_layout): a job under one of these
# names would mix its report with them.
RESERVED_JOB_IDS = frozenset({"outcomes", "rejected", "rejected-blobs"})
ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
_ID_RE = re.compile(ID_PATTERN)
_ENV_NAME_RE = re.compile(ENV_NAME_PATTERN)
_PLACEHOLDER_RE = re.compile(r"\{0(?::(\d{1,2}))?\}")
# Batch application ids and versions: letters, digits, hyphens, underscores (versions also periods), 1-64.
APP_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
APP_VERSION_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"
MAX_DEPENDENCY_IDS_CHARS = 64_000  # Batch: the combined length of a task's dependsOn.taskIds


def _fail(rule: str, message: str, field: str | None = None) -> PydanticCustomError:
    # ctx["field"] lets describe_errors name a field deeper than the validator's own location.
    return PydanticCustomError(rule, message, {"field": field} if field else None)


def is_batch_id(value: object) -> bool:
    """Batch's id rules: 1-64 letters, digits, hyphens and underscores (a trailing newline is not one)."""
    return isinstance(value, str) and _ID_RE.fullmatch(value) is not None


def _check_id(value: str) -> str:
    if not is_batch_id(value):
        raise _fail(
            "batch_id",
            "must be 1-64 characters of letters, digits, hyphen or underscore (Batch id rules)",
        )
    return value


def _check_command_line(value: str) -> str:
    if not value.strip():
        raise _fail("command_line_empty", "must not be empty")
    if len(value) > MAX_COMMAND_LINE:
        raise _fail(
            "command_line_length",
            f"is {len(value)} characters; Batch allows at most {MAX_COMMAND_LINE}",
        )
    return value


def _check_env(value: dict[str, str]) -> dict[str, str]:
    if len(value) > MAX_ENV_VARS:
        raise _fail("env_count", f"has {len(value)} variables; at most {MAX_ENV_VARS} are allowed")
    for name in value:
        if not _ENV_NAME_RE.fullmatch(name):
            raise _fail("env_name", f"variable name {name[:64]!r} must match [A-Za-z_][A-Za-z0-9_]*")
        if name.upper().startswith("AZ_BATCH_"):
            raise _fail("env_reserved", f"variable name {name[:64]!r} uses the prefix AZ_BATCH_ reserved by Batch")
    return value


def _to_duration(value: Any) -> timedelta:
    if isinstance(value, timedelta):
        return value
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise _fail("iso8601_duration", str(exc)) from None


Duration = Annotated[
    timedelta,
    BeforeValidator(_to_duration),
    PlainSerializer(format_duration, return_type=str, when_used="json"),
    WithJsonSchema(
        {"type": "string", "pattern": DURATION_PATTERN, "description": "ISO 8601 duration, e.g. PT1H30M"}
    ),
]
BatchId = Annotated[str, BeforeValidator(_check_id), WithJsonSchema({"type": "string", "pattern": ID_PATTERN})]
CommandLine = Annotated[
    str,
    AfterValidator(_check_command_line),
    WithJsonSchema({"type": "string", "minLength": 1, "maxLength": MAX_COMMAND_LINE}),
]
Environment = Annotated[
    dict[str, str],
    AfterValidator(_check_env),
    WithJsonSchema(
        {
            "type": "object",
            "propertyNames": {"pattern": ENV_NAME_PATTERN},
            "additionalProperties": {"type": "string"},
            "maxProperties": MAX_ENV_VARS,
        }
    ),
]
Retries = Annotated[int, Field(ge=-1, le=MAX_RETRIES, description="-1 means unlimited, as in Batch")]


def _check_retention(value: timedelta) -> timedelta:
    if value <= timedelta(0):
        raise _fail("duration_positive", "must be longer than zero")
    if value > MAX_TIMEOUT:
        raise _fail("retention_too_long", f"must be at most {format_duration(MAX_TIMEOUT)}")
    return value


RetentionTime = Annotated[Duration, AfterValidator(_check_retention)]


class _Model(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
    )


class ResourceFile(_Model):
    """One of httpUrl, storageContainerUrl or autoStorageContainerName, as in Batch."""

    http_url: str | None = Field(default=None, pattern=r"^https?://")
    storage_container_url: str | None = Field(default=None, pattern=r"^https?://")
    auto_storage_container_name: str | None = Field(default=None, pattern=r"^[a-z0-9](?:[a-z0-9-]{1,61})[a-z0-9]$")
    blob_prefix: str | None = None
    file_path: str | None = Field(default=None, max_length=1024)
    file_mode: str | None = Field(default=None, pattern=r"^[0-7]{3,4}$")
    identity_resource_id: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> ResourceFile:
        sources = [s for s in (self.http_url, self.storage_container_url, self.auto_storage_container_name) if s]
        if len(sources) != 1:
            raise _fail(
                "resource_file_source",
                "exactly one of httpUrl, storageContainerUrl, autoStorageContainerName is required",
            )
        if self.http_url and not self.file_path:
            raise _fail("resource_file_path", "filePath is required with httpUrl", "filePath")
        if self.blob_prefix is not None and self.http_url:
            raise _fail("resource_file_prefix", "blobPrefix only applies to a container source", "blobPrefix")
        if self.file_path is not None:
            parts = self.file_path.replace("\\", "/").split("/")
            if self.file_path.startswith(("/", "\\")) or ".." in parts or ":" in self.file_path:
                raise _fail(
                    "resource_file_path",
                    "filePath must be relative to the task directory and must not contain '..'",
                    "filePath",
                )
        return self


class TaskIdRange(_Model):
    """Tasks whose ids are the integers start..end (Batch's taskIdRanges)."""

    start: int = Field(ge=0)
    end: int = Field(ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> TaskIdRange:
        if self.end < self.start:
            raise _fail("task_id_range", "end must be >= start", "end")
        return self


class AutoUser(_Model):
    """Batch's auto-user: a non-admin or admin account Batch creates, one per task or shared by the pool."""

    scope: Literal["task", "pool"] = Field(default="pool", description="Batch's default: pool")
    elevation_level: Literal["nonadmin", "admin"] = Field(default="nonadmin", description="Batch's default")


class UserIdentity(_Model):
    """Who the task runs as (Batch's userIdentity): a named user account of the pool, or an auto-user.
    https://learn.microsoft.com/azure/batch/batch-user-accounts"""

    user_name: str | None = Field(default=None, min_length=1, max_length=20,
                                  description="a user account defined on the pool (Batch: at most 20 characters)")
    auto_user: AutoUser | None = None

    @model_validator(mode="after")
    def _one(self) -> UserIdentity:
        if (self.user_name is None) == (self.auto_user is None):
            raise _fail("user_identity", "give exactly one of userName or autoUser")
        return self


class ApplicationPackage(_Model):
    """An application package of the Batch account; without a version, the application's default version."""

    application_id: Annotated[str, Field(pattern=APP_ID_PATTERN)]
    version: Annotated[str, Field(pattern=APP_VERSION_PATTERN)] | None = None


class OutputFile(_Model):
    """A task's own results uploaded by Batch when the task ends (Batch's outputFiles), to a container the
    request names by URL: a SAS URL with write permission, kept in Batch and redacted everywhere else.
    https://learn.microsoft.com/azure/batch/batch-task-output-files"""

    file_pattern: str = Field(min_length=1, max_length=1024,
                              description="relative to the task's working directory; ** and * allowed")
    container_url: str = Field(pattern=r"^https?://", max_length=4096)
    path: str | None = Field(default=None, max_length=1024,
                             description="a blob name (one file) or a virtual folder (a pattern)")
    upload_condition: Literal["taskSuccess", "taskFailure", "taskCompletion"] = "taskSuccess"


class DependsOn(_Model):
    """Tasks that must all succeed before this one starts (Batch's task dependencies). taskFactory: every
    task of the request's sweep, e.g. a merge step after a parameter sweep.
    https://learn.microsoft.com/azure/batch/batch-task-dependencies"""

    task_ids: list[BatchId] = Field(default_factory=list, max_length=MAX_TASKS)
    task_id_ranges: list[TaskIdRange] = Field(default_factory=list, max_length=1000)
    task_factory: bool = False

    @model_validator(mode="after")
    def _limits(self) -> DependsOn:
        if not (self.task_ids or self.task_id_ranges or self.task_factory):
            raise _fail("depends_on_empty", "name at least one of taskIds, taskIdRanges or taskFactory")
        length = sum(len(t) for t in self.task_ids)
        if length > MAX_DEPENDENCY_IDS_CHARS:
            raise _fail("depends_on_too_long", f"taskIds total {length} characters; Batch allows "
                        f"{MAX_DEPENDENCY_IDS_CHARS} (TaskDependencyListTooLong): use taskIdRanges", "taskIds")
        return self


class _TaskBase(_Model):
    environment: Environment = Field(default_factory=dict)
    resource_files: list[ResourceFile] = Field(default_factory=list, max_length=1000)
    max_retries: Retries = 0
    max_wall_clock: Duration | None = None
    retention_time: RetentionTime | None = Field(
        default=None, description="how long Batch keeps the task's directory on the node; Batch's default: P7D")
    user_identity: UserIdentity | None = None
    # Not a Batch limit (none is documented for a task): a bound on the request's size.
    application_package_references: list[ApplicationPackage] = Field(default_factory=list, max_length=100)
    output_files: list[OutputFile] = Field(default_factory=list, max_length=100)



class TaskSpec(_TaskBase):
    id: BatchId
    command_line: CommandLine
    depends_on: DependsOn | None = None



class ParametricSweep(_TaskBase):
    """Tasks start, start+step, ... <= end; `{0}` (or `{0:N}`, zero-padded to N) is the value."""

    type: Literal["parametricSweep"]
    start: int = Field(ge=-(10**9), le=10**9)
    end: int = Field(ge=-(10**9), le=10**9)
    step: int = Field(default=1, ge=1)
    id_format: str = Field(description="task id with a {0} placeholder, e.g. 'task-{0:05}'")
    command_line: CommandLine
    depends_on: DependsOn | None = Field(default=None, description="what every task of the sweep waits for")

    def integer_ids(self) -> bool:
        """Its ids are the plain integers start..end, so one taskIdRange names them all."""
        return self.id_format == "{0}" and self.start >= 0 and self.step == 1

    def produces(self, task_id: str) -> bool:
        """Whether one of the sweep's tasks has this id (Batch ids compare case-insensitively)."""
        pattern = _PLACEHOLDER_RE.sub(lambda m: "(-?[0-9]+)", re.escape(self.id_format).replace(r"\{", "{")
                                      .replace(r"\}", "}").replace(r"\:", ":"))
        match = re.fullmatch(pattern, task_id, re.IGNORECASE)
        if match is None:
            return False
        value = int(match.group(1))
        return (self.start <= value <= self.end and (value - self.start) % self.step == 0
                and substitute(self.id_format, value).lower() == task_id.lower())

    def count(self) -> int:
        return 0 if self.end < self.start else (self.end - self.start) // self.step + 1

    def values(self) -> range:
        return range(self.start, self.end + 1, self.step)

    @model_validator(mode="after")
    def _check_sweep(self) -> ParametricSweep:
        n = self.count()
        if n < 1:
            raise _fail("sweep_empty", "end must be >= start so the sweep has at least one task", "end")
        if n > MAX_TASKS:
            raise _fail("task_count", f"the sweep makes {n} tasks; at most {MAX_TASKS} are allowed", "end")
        if not _PLACEHOLDER_RE.search(self.id_format):
            raise _fail("sweep_placeholder", "must contain a {0} placeholder so task ids differ", "idFormat")
        last = self.start + (n - 1) * self.step
        for value in (self.start, last):
            task_id = substitute(self.id_format, value)
            if not is_batch_id(task_id):
                raise _fail(
                    "batch_id",
                    f"gives task id {task_id!r} for {value}, which breaks the Batch id rules "
                    "(1-64 letters, digits, hyphen, underscore)",
                    "idFormat",
                )
        longest = max(len(substitute(self.command_line, v)) for v in (self.start, last))
        if longest > MAX_COMMAND_LINE:
            raise _fail(
                "command_line_length",
                f"expands to {longest} characters; Batch allows at most {MAX_COMMAND_LINE}",
                "commandLine",
            )
        return self


class Preparation(_Model):
    command_line: CommandLine
    resource_files: list[ResourceFile] = Field(default_factory=list, max_length=1000)
    environment: Environment = Field(default_factory=dict)
    wait_for_success: bool = Field(default=True, description="false: tasks may start while it runs, and run on "
                                   "the node even if it fails")
    rerun_on_node_reboot_after_success: bool = Field(default=True, description="Batch's default: true")
    max_retries: Retries = 0
    max_wall_clock: Duration | None = None
    retention_time: RetentionTime | None = None
    user_identity: UserIdentity | None = None
    application_package_references: list[ApplicationPackage] = Field(
        default_factory=list, description="refused: Batch deploys no packages for a job preparation task")

    @field_validator("application_package_references")
    @classmethod
    def _no_packages(cls, value: list) -> list:
        if value:
            raise _fail("prep_packages_unsupported",
                        "Batch deploys no application packages for a job preparation task: reference them on the "
                        "pool (every task, the preparation task included, then finds AZ_BATCH_APP_PACKAGE_*) or "
                        "on the tasks")
        return value



class Release(_Model):
    command_line: CommandLine | None = None
    resource_files: list[ResourceFile] = Field(default_factory=list, max_length=1000)
    environment: Environment = Field(default_factory=dict)
    max_wall_clock: Duration = Field(default=MAX_RELEASE_WALL_CLOCK, description="at most PT15M")
    retention_time: RetentionTime | None = None
    user_identity: UserIdentity | None = None


    @field_validator("max_wall_clock")
    @classmethod
    def _release_limit(cls, value: timedelta) -> timedelta:
        if value > MAX_RELEASE_WALL_CLOCK:
            raise _fail("release_wall_clock", "must be at most PT15M (Batch's limit for a release task)")
        if value <= timedelta(0):
            raise _fail("duration_positive", "must be longer than zero")
        return value


class Collect(_Model):
    logs: list[Annotated[str, Field(min_length=1, max_length=1024)]] = Field(default_factory=list, max_length=100)
    crash_dumps: list[Annotated[str, Field(min_length=1, max_length=1024)]] = Field(
        default_factory=list, max_length=100
    )


class JobRequest(_Model):
    """Job request v1."""

    model_config = ConfigDict(
        title="JobRequestV1",
        json_schema_extra={"anyOf": [{"required": ["tasks"]}, {"required": ["taskFactory"]}]},
    )

    job_id: BatchId | None = Field(default=None, description="default: derived from the Service Bus MessageId; "
                                   "not outcomes, rejected or rejected-blobs (any case)")
    pool_id: BatchId
    timeout: Duration = Field(description="deadline from submission, ISO 8601 duration, at most P365D")
    priority: int = Field(default=0, ge=-1000, le=1000)
    environment: Environment = Field(default_factory=dict)
    preparation: Preparation | None = None
    release: Release | None = None
    tasks: list[TaskSpec] | None = Field(default=None, min_length=1, max_length=MAX_TASKS)
    task_factory: ParametricSweep | None = None
    collect: Collect = Field(default_factory=Collect)


    @field_validator("job_id")
    @classmethod
    def _not_reserved(cls, value: str | None) -> str | None:
        if value is not None and value.lower() in RESERVED_JOB_IDS:
            raise _fail("job_id_reserved", f"{value!r} is reserved: the orchestrator keeps its own records "
                        f"under that name (reserved: {', '.join(sorted(RESERVED_JOB_IDS))})")
        return value

    @field_validator("timeout")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise _fail("duration_positive", "must be longer than zero")
        if value > MAX_TIMEOUT:
            raise _fail("timeout_too_long", f"must be at most {format_duration(MAX_TIMEOUT)} (one year)")
        return value

    @model_validator(mode="after")
    def _check_tasks(self) -> JobRequest:
        if self.tasks is None and self.task_factory is None:
            raise _fail("tasks_missing", "give tasks, a taskFactory, or both", "tasks")
        if self.task_count() > MAX_TASKS:
            raise _fail("task_count", f"tasks and the sweep make {self.task_count()}; at most {MAX_TASKS}", "tasks")
        sweep = self.task_factory
        seen: dict[str, int] = {}
        for i, task in enumerate(self.tasks or ()):
            key = task.id.lower()  # Batch ids are case-insensitive
            if key in RESERVED_TASK_IDS:
                raise _fail("task_id_reserved", f"{task.id!r} is reserved for the job's prep/release task",
                            f"tasks[{i}].id")
            if key in seen:
                raise _fail("task_id_duplicate",
                            f"{task.id!r} duplicates tasks[{seen[key]}].id (ids are case-insensitive)",
                            f"tasks[{i}].id")
            if sweep is not None and sweep.produces(task.id):
                raise _fail("task_id_duplicate", f"{task.id!r} is also an id of the taskFactory's sweep",
                            f"tasks[{i}].id")
            seen[key] = i
        check_dependencies(self)
        return self

    def task_count(self) -> int:
        return len(self.tasks or ()) + (self.task_factory.count() if self.task_factory else 0)

    def uses_task_dependencies(self) -> bool:
        return any(t.depends_on for t in self.tasks or ()) or bool(self.task_factory and self.task_factory.depends_on)


SWEEP = "taskFactory"  # the sweep as one node of the dependency graph


def check_dependencies(request: JobRequest) -> None:
    """Every task a dependency names is one of the request's, and nothing waits on itself: either would
    leave tasks blocked until the deadline."""
    sweep = request.task_factory
    explicit = {t.id.lower(): t for t in request.tasks or ()}
    integer_tasks = {int(k): k for k in explicit if k.isdigit()}

    def targets(deps: DependsOn, where: str) -> set[str]:
        out: set[str] = set()
        for j, task_id in enumerate(deps.task_ids):
            if task_id.lower() in explicit:
                out.add(task_id.lower())
            elif sweep is not None and sweep.produces(task_id):
                out.add(SWEEP)
            else:
                raise _fail("depends_on_unknown", f"{task_id!r} is not a task of this request",
                            f"{where}.dependsOn.taskIds[{j}]")
        for r in deps.task_id_ranges:
            out |= {k for n, k in integer_tasks.items() if r.start <= n <= r.end}
            if sweep is not None and sweep.integer_ids() and r.start <= sweep.end and sweep.start <= r.end:
                out.add(SWEEP)
        if deps.task_factory:
            if sweep is None:
                raise _fail("depends_on_unknown", "taskFactory: this request has no taskFactory",
                            f"{where}.dependsOn.taskFactory")
            if not sweep.integer_ids():
                length = sum(len(t) for t in deps.task_ids) + sum(len(i) for i in sweep_ids(sweep))
                if length > MAX_DEPENDENCY_IDS_CHARS:
                    raise _fail("depends_on_too_long",
                                f"the sweep's task ids total {length} characters, over Batch's {MAX_DEPENDENCY_IDS_CHARS} "
                                "for one task's dependencies; give the sweep idFormat '{0}' (start >= 0, step 1) so "
                                "one id range covers it", f"{where}.dependsOn.taskFactory")
            out.add(SWEEP)
        return out

    edges: dict[str, set[str]] = {}
    for i, task in enumerate(request.tasks or ()):
        if task.depends_on is not None:
            edges[task.id.lower()] = targets(task.depends_on, f"tasks[{i}]")
    if sweep is not None and sweep.depends_on is not None:
        edges[SWEEP] = targets(sweep.depends_on, "taskFactory")
        if SWEEP in edges[SWEEP]:
            raise _fail("depends_on_cycle", "the sweep's tasks cannot wait for the sweep", "taskFactory.dependsOn")
    done: set[str] = set()
    for start in edges:
        path: list[str] = []
        stack = [(start, iter(sorted(edges.get(start, ()))))]
        on_path = {start}
        path.append(start)
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                stack.pop()
                on_path.discard(node)
                path.pop()
                done.add(node)
            elif child in on_path:
                raise _fail("depends_on_cycle", "tasks wait on each other: " + " -> ".join([*path, child]), "tasks")
            elif child not in done:
                on_path.add(child)
                path.append(child)
                stack.append((child, iter(sorted(edges.get(child, ())))))


def sweep_ids(sweep: ParametricSweep) -> Iterator[str]:
    return (substitute(sweep.id_format, value) for value in sweep.values())


def substitute(template: str, value: int) -> str:
    """Replace {0} / {0:N} only; other braces (e.g. bash ${VAR}) are left alone."""
    return _PLACEHOLDER_RE.sub(lambda m: f"{value:0{int(m.group(1) or 0)}d}", template)


def _has_dependencies(task: TaskSpec) -> bool:
    deps = task.depends_on
    return deps is not None and (deps.task_factory or bool(deps.task_id_ranges) or bool(deps.task_ids))


def expand_tasks(request: JobRequest) -> Iterator[TaskSpec]:
    """The concrete tasks, lazily, so a 100,000-task sweep is never materialised at once: the request's own
    tasks that wait for nothing, then the sweep, then the tasks that wait (a merge after the sweep), so a
    task is added after those it waits for."""
    explicit = request.tasks or []
    yield from (t for t in explicit if not _has_dependencies(t))
    sweep = request.task_factory
    if sweep is not None:
        for value in sweep.values():
            # Validated as a whole by ParametricSweep; per-task validation would only repeat it.
            yield TaskSpec.model_construct(
                id=substitute(sweep.id_format, value),
                command_line=substitute(sweep.command_line, value),
                environment={k: substitute(v, value) for k, v in sweep.environment.items()},
                resource_files=sweep.resource_files,
                max_retries=sweep.max_retries,
                max_wall_clock=sweep.max_wall_clock,
                retention_time=sweep.retention_time,
                user_identity=sweep.user_identity,
                application_package_references=sweep.application_package_references,
                output_files=[f.model_copy(update={"file_pattern": substitute(f.file_pattern, value),
                                                   "path": substitute(f.path, value) if f.path else None})
                              for f in sweep.output_files],
                depends_on=sweep.depends_on,
            )
    yield from (t for t in explicit if _has_dependencies(t))


def canonical_json(request: JobRequest) -> str:
    # exclude_defaults keeps hashes of existing jobs stable when a field with a default is added.
    data = request.model_dump(mode="json", by_alias=True, exclude_defaults=True)
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def request_hash(request: JobRequest) -> str:
    return hashlib.sha256(canonical_json(request).encode()).hexdigest()


def message_key(message_id: str | None, sequence_number: int | None, body: bytes) -> str:
    """What identifies a delivery's request: its MessageId, which senders may leave out. Then the
    broker's sequence number, the same on every redelivery of that message; then (a host that gives
    neither) the body's digest, so redeliveries still agree."""
    if message_id:
        return message_id
    if sequence_number is not None:
        return f"seq-{sequence_number}"
    return "body-" + hashlib.sha256(body).hexdigest()[:40]


def derive_job_id(message_id: str) -> str:
    """Hashed rather than reused: MessageIds may break Batch id rules or differ only in case."""
    if not message_id:
        raise ValueError("message_id must not be empty")
    return "msg-" + hashlib.sha256(message_id.encode()).hexdigest()[:40]


def claimed_job_id(raw: str | bytes) -> str | None:
    """The jobId an invalid request asked for, if it is a valid Batch id, so its rejection can be found
    under that id; None when the request is not JSON, has no usable jobId, or has none at all."""
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    job_id = body.get("jobId") if isinstance(body, dict) else None
    return job_id if is_batch_id(job_id) else None


class RequestInvalid(ValueError):
    def __init__(self, errors: list[dict[str, str]]):
        self.errors = errors
        super().__init__(format_errors(errors))


def _loc_to_field(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "$"


def describe_errors(exc: ValidationError) -> list[dict[str, str]]:
    """[{field, rule, message}] with camelCase paths like `tasks[3].commandLine`."""
    result = []
    for err in exc.errors(include_url=False):
        loc = tuple(err.get("loc", ()))
        ctx = err.get("ctx") or {}
        field = _loc_to_field(loc)
        if ctx.get("field"):
            inner = ctx["field"]
            field = inner if field == "$" else f"{field}.{inner}"
        # Never echo the rejected input: URLs in it may carry SAS tokens.
        result.append({"field": field, "rule": err["type"], "message": err["msg"]})
    return result


def format_errors(errors: list[dict[str, str]]) -> str:
    return "; ".join(f"{e['field']}: {e['message']} [{e['rule']}]" for e in errors)


def parse_request(raw: str | bytes | Mapping[str, Any]) -> JobRequest:
    """Validate a request from JSON text or a dict; raises RequestInvalid listing every problem."""
    try:
        if isinstance(raw, str | bytes | bytearray):
            return JobRequest.model_validate_json(raw, by_alias=True)
        return JobRequest.model_validate(raw, by_alias=True)
    except ValidationError as exc:
        raise RequestInvalid(describe_errors(exc)) from None


def json_schema() -> dict[str, Any]:
    schema = JobRequest.model_json_schema(by_alias=True, mode="validation")
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID, **schema}


def schema_text() -> str:
    return json.dumps(json_schema(), indent=2, sort_keys=True) + "\n"
