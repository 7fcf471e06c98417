import json
from datetime import UTC, datetime, timedelta
from itertools import islice
from pathlib import Path

import pytest

from shared.adapters.store import OUTCOMES_PREFIX, REJECTED_PREFIX
from shared.pure import blob_layout as bl
from shared.pure.duration import format_duration, parse_duration
from shared.pure.request import (
    MAX_COMMAND_LINE,
    MAX_TASKS,
    RESERVED_JOB_IDS,
    RequestInvalid,
    claimed_job_id,
    derive_job_id,
    expand_tasks,
    parse_request,
    request_hash,
    schema_text,
)

ROOT = Path(__file__).resolve().parents[2]
BASE = {"poolId": "pool-1", "timeout": "PT1H", "tasks": [{"id": "t1", "commandLine": "echo hi"}]}


def with_(**changes):
    data = json.loads(json.dumps(BASE))
    for key, value in changes.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    return data


def sweep(**over):
    return {"type": "parametricSweep", "start": 1, "end": 10, "idFormat": "t-{0}", "commandLine": "run {0}", **over}


def errors_of(data):
    with pytest.raises(RequestInvalid) as info:
        parse_request(data)
    return {(e["field"], e["rule"]) for e in info.value.errors}, str(info.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("PT15M", timedelta(minutes=15)),
        ("P1DT2H", timedelta(days=1, hours=2)),
        ("PT0.5S", timedelta(seconds=0.5)),
        ("P2W", timedelta(weeks=2)),
        ("PT1H30M15S", timedelta(hours=1, minutes=30, seconds=15)),
    ],
)
def test_duration_parses(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    "text", ["", "P", "PT", "P1M", "P1Y", "1H", "PT-1H", "PT1.5H", "P1DT", "PT1H ", "pt1h", "xyz", "P" + "9" * 70 + "D"]
)
def test_duration_rejects(text):
    with pytest.raises(ValueError):
        parse_duration(text)


@pytest.mark.parametrize(
    ("value", "text"),
    [(timedelta(0), "PT0S"), (timedelta(minutes=90), "PT1H30M"), (timedelta(days=1, seconds=0.25), "P1DT0.25S")],
)
def test_duration_formats_canonically(value, text):
    assert format_duration(value) == text
    assert parse_duration(text) == value


def test_minimal_request_is_valid():
    req = parse_request(BASE)
    assert req.pool_id == "pool-1" and req.timeout == timedelta(hours=1) and req.task_count() == 1


@pytest.mark.parametrize(
    ("data", "field", "rule"),
    [
        (with_(jobId="bad id"), "jobId", "batch_id"),
        (with_(jobId="x" * 65), "jobId", "batch_id"),
        (with_(jobId="job-1\n"), "jobId", "batch_id"),
        (with_(jobId="outcomes"), "jobId", "job_id_reserved"),
        (with_(jobId="Rejected"), "jobId", "job_id_reserved"),
        (with_(jobId="rejected-blobs"), "jobId", "job_id_reserved"),  # `$` alone would let a trailing newline through
        (with_(tasks=[{"id": "t\n", "commandLine": "x"}]), "tasks[0].id", "batch_id"),
        (with_(poolId=None), "poolId", "missing"),
        (with_(timeout="P1M"), "timeout", "iso8601_duration"),
        (with_(timeout="PT0S"), "timeout", "duration_positive"),
        (with_(priority=1001), "priority", "less_than_equal"),
        (with_(priority=-1001), "priority", "greater_than_equal"),
        (with_(unknownField=1), "unknownField", "extra_forbidden"),
        (with_(environment={"1BAD": "x"}), "environment", "env_name"),
        (with_(environment={"A-B": "x"}), "environment", "env_name"),
        (with_(environment={"AZ_BATCH_NODE_ID": "x"}), "environment", "env_reserved"),
        (with_(release={"maxWallClock": "PT16M"}), "release.maxWallClock", "release_wall_clock"),
        (with_(release={"commandLine": "x", "extra": 1}), "release.extra", "extra_forbidden"),
        (with_(preparation={"commandLine": ""}), "preparation.commandLine", "command_line_empty"),
        (with_(preparation={"commandLine": "x", "maxRetries": 101}), "preparation.maxRetries", "less_than_equal"),
        (with_(tasks=[{"id": "t", "commandLine": "x" * (MAX_COMMAND_LINE + 1)}]), "tasks[0].commandLine",
         "command_line_length"),
        (with_(tasks=[{"id": "a", "commandLine": "x"}, {"id": "A", "commandLine": "y"}]), "tasks[1].id",
         "task_id_duplicate"),
        (with_(tasks=[{"id": "JobPreparation", "commandLine": "x"}]), "tasks[0].id", "task_id_reserved"),
        (with_(tasks=[{"id": "jobrelease", "commandLine": "x"}]), "tasks[0].id", "task_id_reserved"),
        (with_(tasks=[{"id": "t/1", "commandLine": "x"}]), "tasks[0].id", "batch_id"),
        (with_(tasks=[]), "tasks", "too_short"),
        (with_(tasks=None), "tasks", "tasks_missing"),
        (with_(tasks=[{"id": "T-3", "commandLine": "x"}], taskFactory=sweep()), "tasks[0].id", "task_id_duplicate"),
        (with_(tasks=[{"id": "t", "commandLine": "x"}], taskFactory=sweep(end=MAX_TASKS)), "tasks", "task_count"),
        # Issue 14: who a task runs as, how long its files stay, its packages, outputs and dependencies.
        (with_(tasks=[{"id": "t", "commandLine": "x", "userIdentity": {}}]), "tasks[0].userIdentity", "user_identity"),
        (with_(tasks=[{"id": "t", "commandLine": "x", "userIdentity": {"userName": "u", "autoUser": {}}}]),
         "tasks[0].userIdentity", "user_identity"),
        (with_(tasks=[{"id": "t", "commandLine": "x", "userIdentity": {"userName": "u" * 21}}]),
         "tasks[0].userIdentity.userName", "string_too_long"),
        (with_(tasks=[{"id": "t", "commandLine": "x", "userIdentity": {"autoUser": {"elevationLevel": "root"}}}]),
         "tasks[0].userIdentity.autoUser.elevationLevel", "literal_error"),
        (with_(tasks=[{"id": "t", "commandLine": "x", "retentionTime": "PT0S"}]), "tasks[0].retentionTime",
         "duration_positive"),
        (with_(preparation={"commandLine": "x", "retentionTime": "P400D"}), "preparation.retentionTime",
         "retention_too_long"),
        (with_(tasks=[{"id": "t", "commandLine": "x", "applicationPackageReferences": [{"applicationId": "a b"}]}]),
         "tasks[0].applicationPackageReferences[0].applicationId", "string_pattern_mismatch"),
        (with_(preparation={"commandLine": "x", "applicationPackageReferences": [{"applicationId": "a"}]}),
         "preparation.applicationPackageReferences", "prep_packages_unsupported"),
        (with_(tasks=[{"id": "t", "commandLine": "x", "outputFiles": [
            {"filePattern": "*.csv", "containerUrl": "ftp://x", "uploadCondition": "taskSuccess"}]}]),
         "tasks[0].outputFiles[0].containerUrl", "string_pattern_mismatch"),
        (with_(tasks=[{"id": "t", "commandLine": "x", "outputFiles": [
            {"filePattern": "*.csv", "containerUrl": "https://a/c", "uploadCondition": "always"}]}]),
         "tasks[0].outputFiles[0].uploadCondition", "literal_error"),
        (with_(tasks=[{"id": "t", "commandLine": "x", "dependsOn": {}}]), "tasks[0].dependsOn", "depends_on_empty"),
        (with_(tasks=[{"id": "t", "commandLine": "x", "dependsOn": {"taskIds": ["nope"]}}]),
         "tasks[0].dependsOn.taskIds[0]", "depends_on_unknown"),
        (with_(tasks=[{"id": "t", "commandLine": "x", "dependsOn": {"taskFactory": True}}]),
         "tasks[0].dependsOn.taskFactory", "depends_on_unknown"),
        (with_(tasks=[{"id": "a", "commandLine": "x", "dependsOn": {"taskIds": ["b"]}},
                      {"id": "b", "commandLine": "x", "dependsOn": {"taskIds": ["A"]}}]), "tasks", "depends_on_cycle"),
        (with_(tasks=[{"id": "m", "commandLine": "x", "dependsOn": {"taskFactory": True}}],
               taskFactory=sweep(dependsOn={"taskIds": ["m"]})), "tasks", "depends_on_cycle"),
        (with_(tasks=[{"id": "t", "commandLine": "x", "dependsOn": {"taskIdRanges": [{"start": 5, "end": 1}]}}]),
         "tasks[0].dependsOn.taskIdRanges[0].end", "task_id_range"),
        (with_(tasks=[{"id": "t", "commandLine": "x", "dependsOn": {"taskIds": ["a" * 64] * 1001}}]),
         "tasks[0].dependsOn.taskIds", "depends_on_too_long"),
        (with_(tasks=None, taskFactory=sweep(end=MAX_TASKS + 1)), "taskFactory.end", "task_count"),
        (with_(tasks=None, taskFactory=sweep(end=0)), "taskFactory.end", "sweep_empty"),
        (with_(tasks=None, taskFactory=sweep(idFormat="same")), "taskFactory.idFormat", "sweep_placeholder"),
        (with_(tasks=None, taskFactory=sweep(idFormat="t {0}")), "taskFactory.idFormat", "batch_id"),
        (with_(tasks=None, taskFactory=sweep(commandLine="{0}" + "x" * MAX_COMMAND_LINE)),
         "taskFactory.commandLine", "command_line_length"),
        (with_(tasks=None, taskFactory=sweep(type="other")), "taskFactory.type", "literal_error"),
        (with_(tasks=None, taskFactory=sweep(step=0)), "taskFactory.step", "greater_than_equal"),
        (with_(tasks=[{"id": "t", "commandLine": "x", "resourceFiles": [{"filePath": "a"}]}]),
         "tasks[0].resourceFiles[0]", "resource_file_source"),
        (with_(tasks=[{"id": "t", "commandLine": "x", "resourceFiles": [{"httpUrl": "https://h/f"}]}]),
         "tasks[0].resourceFiles[0].filePath", "resource_file_path"),
        (with_(tasks=[{"id": "t", "commandLine": "x",
                       "resourceFiles": [{"httpUrl": "https://h/f", "filePath": "../etc/passwd"}]}]),
         "tasks[0].resourceFiles[0].filePath", "resource_file_path"),
        (with_(collect={"logs": ["*.log"], "dumps": []}), "collect.dumps", "extra_forbidden"),
    ],
)
def test_rejections_name_field_and_rule(data, field, rule):
    found, message = errors_of(data)
    assert (field, rule) in found, found
    assert field in message and rule in message


def test_error_messages_never_echo_input():
    secret = "https://acct.blob.core.windows.net/c?sv=1&sig=SECRET"
    _, message = errors_of(with_(tasks=[{"id": "t", "commandLine": "x", "resourceFiles": [{"httpUrl": secret}]}]))
    assert "SECRET" not in message


def test_bad_json_is_reported():
    with pytest.raises(RequestInvalid) as info:
        parse_request(b"{not json")
    assert info.value.errors[0]["rule"] == "json_invalid"


def test_resource_file_container_source_is_valid():
    req = parse_request(with_(preparation={"commandLine": "x", "resourceFiles": [
        {"storageContainerUrl": "https://a/c?sig=x", "blobPrefix": "data/"}]}))
    assert req.preparation.resource_files[0].blob_prefix == "data/"


def test_expand_explicit_tasks():
    req = parse_request(with_(tasks=[{"id": "a", "commandLine": "x"}, {"id": "b", "commandLine": "y"}]))
    assert [t.id for t in expand_tasks(req)] == ["a", "b"]


@pytest.mark.parametrize(
    ("factory", "ids", "commands"),
    [
        (sweep(start=1, end=3), ["t-1", "t-2", "t-3"], ["run 1", "run 2", "run 3"]),
        (sweep(start=0, end=10, step=5, idFormat="t-{0:3}"), ["t-000", "t-005", "t-010"], ["run 0", "run 5", "run 10"]),
        (sweep(start=-1, end=0, commandLine="echo ${HOME} {0} {1}"), ["t--1", "t-0"],
         ["echo ${HOME} -1 {1}", "echo ${HOME} 0 {1}"]),
    ],
)
def test_expand_sweep(factory, ids, commands):
    tasks = list(expand_tasks(parse_request(with_(tasks=None, taskFactory=factory))))
    assert [t.id for t in tasks] == ids
    assert [t.command_line for t in tasks] == commands


def test_expand_sweep_is_lazy_and_full_size():
    req = parse_request(with_(tasks=None, taskFactory=sweep(start=1, end=MAX_TASKS, idFormat="t{0:6}",
                                                            environment={"N": "{0}"})))
    assert req.task_count() == MAX_TASKS
    first = list(islice(expand_tasks(req), 2))
    assert [t.id for t in first] == ["t000001", "t000002"] and first[1].environment == {"N": "2"}
    assert sum(1 for _ in expand_tasks(req)) == MAX_TASKS


def test_request_hash_is_stable_and_canonical():
    a = parse_request(with_(timeout="PT60M", environment={"B": "2", "A": "1"}))
    b = parse_request(json.dumps(with_(timeout="PT1H", environment={"A": "1", "B": "2"}, priority=0)))
    assert request_hash(a) == request_hash(b)
    assert request_hash(a) != request_hash(parse_request(with_(priority=1)))
    assert len(request_hash(a)) == 64


@pytest.mark.parametrize("message_id", ["abc", "ABC", "x" * 500, "id with spaces/and:colons", "é"])
def test_derive_job_id_is_stable_and_batch_valid(message_id):
    job_id = derive_job_id(message_id)
    assert job_id == derive_job_id(message_id)
    parse_request(with_(jobId=job_id))  # passes the Batch id rules
    assert derive_job_id(message_id + "1") != job_id


def test_reserved_job_ids_cover_every_report_folder():
    rejected_blob = bl.rejected_blob_record_name(bl.BadBlobName("x", "rule", "message", "0" * 64))
    folders = {REJECTED_PREFIX, OUTCOMES_PREFIX, rejected_blob.split("/")[0] + "/"}
    assert {f.rstrip("/") for f in folders} <= RESERVED_JOB_IDS


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b'{"jobId": "nightly-7", "timeout": "soon"}', "nightly-7"),
        (b'{"jobId": "bad id!"}', None),
        (b'{"jobId": "job\\n"}', None),
        (b'{"jobId": 7}', None),
        (b'["jobId"]', None),
        (b"{not json", None),
        (b"\xff\xfe", None),
        (b"{}", None),
    ],
)
def test_claimed_job_id(raw, expected):
    assert claimed_job_id(raw) == expected


def test_derive_job_id_separates_case():
    assert derive_job_id("abc") != derive_job_id("ABC")


def test_schema_file_is_current():
    path = ROOT / "schemas" / "job-request.v1.json"
    assert path.read_text(encoding="utf-8") == schema_text(), (
        "schemas/job-request.v1.json is stale: run python -m shared.flows.schema_file --write schemas/job-request.v1.json"
    )


def test_the_sweep_then_merge_example_validates_and_plans_one_range():
    from shared.pure.planning import Links, plan

    req = parse_request((ROOT / "examples" / "sweep-then-merge.json").read_bytes())
    assert req.task_count() == 101 and req.uses_task_dependencies()
    links = Links(node_files=(), logs_container_url="https://acct/job-logs?sig=x")
    *_, last = plan(req, "sweep-then-merge", "h" * 64, datetime.now(UTC), links).task_chunks()
    assert last[-1]["id"] == "merge" and last[-1]["dependsOn"] == {"taskIdRanges": [{"start": 0, "end": 99}]}


def test_example_request_validates():
    req = parse_request((ROOT / "examples" / "job-request.json").read_bytes())
    tasks = list(expand_tasks(req))
    assert len(tasks) == 8
    assert "AZ_BATCH_NODE_SHARED_DIR" in req.preparation.command_line
    assert req.release.max_wall_clock <= timedelta(minutes=15)
