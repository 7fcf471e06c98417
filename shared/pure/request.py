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


class _TaskBase(_Model):
    environment: Environment = Field(default_factory=dict)
    resource_files: list[ResourceFile] = Field(default_factory=list, max_length=1000)
    max_retries: Retries = 0
    max_wall_clock: Duration | None = None



class TaskSpec(_TaskBase):
    id: BatchId
    command_line: CommandLine



class ParametricSweep(_TaskBase):
    """Tasks start, start+step, ... <= end; `{0}` (or `{0:N}`, zero-padded to N) is the value."""

    type: Literal["parametricSweep"]
    start: int = Field(ge=-(10**9), le=10**9)
    end: int = Field(ge=-(10**9), le=10**9)
    step: int = Field(default=1, ge=1)
    id_format: str = Field(description="task id with a {0} placeholder, e.g. 'task-{0:05}'")
    command_line: CommandLine

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
    wait_for_success: bool = True
    max_retries: Retries = 0
    max_wall_clock: Duration | None = None



class Release(_Model):
    command_line: CommandLine | None = None
    resource_files: list[ResourceFile] = Field(default_factory=list, max_length=1000)
    environment: Environment = Field(default_factory=dict)
    max_wall_clock: Duration = Field(default=MAX_RELEASE_WALL_CLOCK, description="at most PT15M")


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
        json_schema_extra={"oneOf": [{"required": ["tasks"]}, {"required": ["taskFactory"]}]},
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
        if (self.tasks is None) == (self.task_factory is None):
            raise _fail("tasks_xor_factory", "give exactly one of tasks or taskFactory", "tasks")
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
            seen[key] = i
        return self

    def task_count(self) -> int:
        return len(self.tasks) if self.tasks is not None else self.task_factory.count()


def substitute(template: str, value: int) -> str:
    """Replace {0} / {0:N} only; other braces (e.g. bash ${VAR}) are left alone."""
    return _PLACEHOLDER_RE.sub(lambda m: f"{value:0{int(m.group(1) or 0)}d}", template)


def expand_tasks(request: JobRequest) -> Iterator[TaskSpec]:
    """The concrete tasks, lazily, so a 100,000-task sweep is never materialised at once."""
    if request.tasks is not None:
        yield from request.tasks
        return
    sweep = request.task_factory
    for value in sweep.values():
        # Validated as a whole by ParametricSweep; per-task validation would only repeat it.
        yield TaskSpec.model_construct(
            id=substitute(sweep.id_format, value),
            command_line=substitute(sweep.command_line, value),
            environment={k: substitute(v, value) for k, v in sweep.environment.items()},
            resource_files=sweep.resource_files,
            max_retries=sweep.max_retries,
            max_wall_clock=sweep.max_wall_clock,
        )


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
