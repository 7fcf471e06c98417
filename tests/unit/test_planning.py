"""The pure job planner: request in, Batch REST bodies out."""

from __future__ import annotations

import json
import shlex
from datetime import UTC, datetime, timedelta

import pytest

from shared.pure import metadata as md
from shared.pure.planning import CRASH_PSEUDO_NODE, Links, _task_pattern, plan, release_command, sas_expiry
from shared.pure.request import parse_request
from shared.pure.settings import PoolIdentity

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
LINKS = Links(node_files=(("log_uploader.py", "https://acct/tools/log_uploader.py?sig=r"),
                          ("lognames.py", "https://acct/tools/lognames.py?sig=r")),
              logs_container_url="https://acct/job-logs?sp=c&sig=c", task_output_url="https://acct/job-logs?sp=cw&sig=w")


def req(**extra) -> dict:
    body = {"poolId": "p", "timeout": "PT1H", "tasks": [{"id": "a", "commandLine": "/bin/true"}]}
    body.update(extra)
    return body


def test_job_body_starts_with_noaction_and_carries_metadata():
    job_plan = plan(parse_request(req(jobId="j1")), "j1", "h" * 64, NOW, LINKS)
    job = job_plan.job
    assert job["onAllTasksComplete"] == "noaction"
    meta = md.decode(md.as_dict(job["metadata"]))
    assert (meta.deadline, meta.expected_tasks, meta.submitted) == (NOW + timedelta(hours=1), 1, False)
    assert job["constraints"]["maxWallClockTime"] == "PT4200S", "Batch's own backstop: deadline + 10 minutes"
    assert job["jobPreparationTask"]["commandLine"] == "/bin/true", "a release task needs a prep task"
    files = job["jobReleaseTask"]["resourceFiles"]
    assert files == [{"httpUrl": url, "filePath": name} for name, url in LINKS.node_files], \
        "the uploader and the naming rules it imports, side by side in the task's directory"
    env = {e["name"]: e["value"] for e in job["jobReleaseTask"]["environmentSettings"]}
    assert env["ORCHESTRATOR_RELEASE_MAX_SECONDS"] == "900" == str(int(job["jobReleaseTask"]["maxWallClockTime"][2:-1]))


START = "export ORCHESTRATOR_RELEASE_STARTED=$(date +%s); "


@pytest.mark.parametrize(("user", "expected_script"), [
    (None, START + 'rc=0; python3 "$AZ_BATCH_TASK_WORKING_DIR/log_uploader.py"; exit $rc'),
    ("rm -f a.txt", START + 'rm -f a.txt; rc=$?; python3 "$AZ_BATCH_TASK_WORKING_DIR/log_uploader.py"; exit $rc'),
    ("echo '$HOME; rm -rf /'", START + "echo '$HOME; rm -rf /'; rc=$?; python3 "
                               '"$AZ_BATCH_TASK_WORKING_DIR/log_uploader.py"; exit $rc'),
])
def test_release_command_keeps_user_exit_code_and_no_shell_semantics(user, expected_script):
    argv = shlex.split(release_command(user))
    assert argv[:2] == ["/bin/bash", "-c"]
    assert argv[2] == expected_script


@pytest.mark.parametrize(("pattern", "expected"), [
    ("job-1/*/wd/core*", "../../../job-1/t7/wd/core*"),
    ("job-1/**/wd/*.dmp", "../../../job-1/t7/wd/*.dmp"),
    ("dumps/*.dmp", "../../../dumps/*.dmp"),
    ("/var/crash/*", "/var/crash/*"),
])
def test_crash_globs_become_task_relative(pattern, expected):
    assert _task_pattern(pattern, "t7") == expected


def test_tasks_chunk_by_100_and_failing_tasks_ship_their_dumps():
    body = req(tasks=None, taskFactory={"type": "parametricSweep", "start": 1, "end": 250, "idFormat": "t{0}",
                                        "commandLine": "run {0}"}, collect={"crashDumps": ["job-1/*/wd/core*"]})
    job_plan = plan(parse_request(body), "j2", "h", NOW, LINKS)
    chunks = list(job_plan.task_chunks())
    assert [len(c) for c in chunks] == [100, 100, 50]
    first = chunks[0][0]
    assert (first["id"], first["commandLine"]) == ("t1", "run 1")
    (output,) = first["outputFiles"]
    assert output["uploadOptions"]["uploadCondition"] == "taskfailure"
    assert output["destination"]["container"]["path"] == f"j2/{CRASH_PSEUDO_NODE}/crashdumps/t1"


def test_sas_outlives_the_last_release_task_only():
    deadline = NOW + timedelta(hours=1)
    assert sas_expiry(deadline) == deadline + timedelta(minutes=30)


@pytest.mark.parametrize("identity", [None, PoolIdentity("client-1", "/subscriptions/s/identities/pool")])
def test_nodes_write_with_a_sas_or_with_the_pools_identity_never_both(identity):
    links = LINKS if identity is None else Links(node_files=LINKS.node_files,
                                                   logs_container_url="https://acct/job-logs", upload_identity=identity)
    body = req(collect={"crashDumps": ["job-1/*/wd/core*"]})
    job_plan = plan(parse_request(body), "j3", "h", NOW, links)
    env = {e["name"]: e["value"] for e in job_plan.job["jobReleaseTask"]["environmentSettings"]}
    (output,) = next(job_plan.task_chunks())[0]["outputFiles"]
    container = output["destination"]["container"]
    if identity is None:
        assert env["ORCHESTRATOR_LOGS_SAS_URL"] == LINKS.logs_container_url, "the uploader may only create"
        assert container["containerUrl"] == LINKS.task_output_url, "Batch's outputFiles need write"
        assert "ORCHESTRATOR_UPLOAD_CLIENT_ID" not in env and "identityReference" not in container
    else:
        assert (env["ORCHESTRATOR_LOGS_CONTAINER_URL"], env["ORCHESTRATOR_UPLOAD_CLIENT_ID"]) == (
            "https://acct/job-logs", "client-1")
        assert "ORCHESTRATOR_LOGS_SAS_URL" not in env
        assert container["identityReference"] == {"resourceId": identity.resource_id}
        assert "sig=" not in str(job_plan.job) .replace("tools/log_uploader.py?sig=r", "").replace(
            "tools/lognames.py?sig=r", "") + str(container), "no write SAS anywhere in the job"


@pytest.mark.parametrize(("timeout", "lifetime", "refused"), [
    (timedelta(days=30), None, False),  # the pool's identity, or an account key: nothing expires early
    (timedelta(days=6), timedelta(days=7), False),
    (timedelta(days=7) - timedelta(minutes=36), timedelta(days=7), False),
    (timedelta(days=7) - timedelta(minutes=34), timedelta(days=7), True),
    (timedelta(days=8), timedelta(days=7), True),
])
def test_a_job_may_not_outlive_its_upload_sas(timeout, lifetime, refused):
    from shared.pure.planning import credential_refusal

    reason = credential_refusal(timeout, lifetime)
    assert (reason is not None) == refused
    if refused:
        assert reason.endswith("[timeout_exceeds_sas_lifetime]") and "pool identity" in reason


def test_with_the_pools_identity_the_job_holds_no_sas_at_all():
    identity = PoolIdentity("client-1", "/subscriptions/s/identities/pool")
    links = Links(node_files=(("log_uploader.py", "https://acct/tools/log_uploader.py"),
                              ("lognames.py", "https://acct/tools/lognames.py")),
                  logs_container_url="https://acct/job-logs", upload_identity=identity)
    job_plan = plan(parse_request(req(timeout="P300D", collect={"crashDumps": ["job-1/*/wd/core*"]})), "j4", "h",
                    NOW, links)
    files = job_plan.job["jobReleaseTask"]["resourceFiles"]
    assert all(f["identityReference"] == {"resourceId": identity.resource_id} for f in files)
    everything = json.dumps(job_plan.job) + json.dumps(next(job_plan.task_chunks()))
    assert "sig=" not in everything and "?" not in everything


def tasks_of(job_plan) -> list[dict]:
    return [body for chunk in job_plan.task_chunks() for body in chunk]


def test_identities_retention_and_reboot_rules_reach_batchs_wire_names():
    admin = {"autoUser": {"scope": "task", "elevationLevel": "admin"}}
    body = req(preparation={"commandLine": "apt-get install -y x", "userIdentity": admin, "retentionTime": "PT2H",
                            "rerunOnNodeRebootAfterSuccess": False, "waitForSuccess": False},
               release={"userIdentity": {"userName": "ops"}, "retentionTime": "PT30M"},
               tasks=[{"id": "a", "commandLine": "x", "userIdentity": {"autoUser": {}}, "retentionTime": "P1D",
                       "applicationPackageReferences": [{"applicationId": "blender", "version": "4.1"},
                                                        {"applicationId": "ffmpeg"}]}])
    job_plan = plan(parse_request(body), "j1", "h" * 64, NOW, LINKS)
    prep, release = job_plan.job["jobPreparationTask"], job_plan.job["jobReleaseTask"]
    assert (prep["userIdentity"], prep["rerunOnNodeRebootAfterSuccess"], prep["waitForSuccess"]) == (admin, False, False)
    assert prep["constraints"] == {"maxTaskRetryCount": 0, "retentionTime": "PT7200S"}
    assert (release["userIdentity"], release["retentionTime"]) == ({"username": "ops"}, "PT1800S")
    (task,) = tasks_of(job_plan)
    assert task["userIdentity"] == {"autoUser": {"scope": "pool", "elevationLevel": "nonadmin"}}
    assert task["constraints"] == {"maxTaskRetryCount": 0, "retentionTime": "PT86400S"}
    assert task["applicationPackageReferences"] == [{"applicationId": "blender", "version": "4.1"},
                                                    {"applicationId": "ffmpeg"}]
    assert job_plan.job["usesTaskDependencies"] is False


def test_defaults_leave_batchs_own_defaults_in_place():
    job_plan = plan(parse_request(req()), "j1", "h" * 64, NOW, LINKS)
    (task,) = tasks_of(job_plan)
    assert set(task) == {"id", "commandLine", "environmentSettings", "resourceFiles", "constraints"}
    assert job_plan.job["jobPreparationTask"]["rerunOnNodeRebootAfterSuccess"] is True


@pytest.mark.parametrize(("sweep", "merge_depends_on"), [
    # Plain integer ids: one range names the whole sweep, however big.
    ({"start": 0, "end": 99_997, "idFormat": "{0}"}, {"taskIdRanges": [{"start": 0, "end": 99_997}]}),
    # Other ids: listed (Batch allows 64,000 characters of them).
    ({"start": 1, "end": 3, "idFormat": "part-{0}"}, {"taskIds": ["part-1", "part-2", "part-3"]}),
])
def test_a_merge_task_waits_for_the_whole_sweep_and_is_added_after_it(sweep, merge_depends_on):
    factory = {"type": "parametricSweep", "commandLine": "run {0}", **sweep}
    body = req(taskFactory=factory, tasks=[{"id": "merge", "commandLine": "merge", "dependsOn": {"taskFactory": True}},
                                           {"id": "setup", "commandLine": "setup"}])
    job_plan = plan(parse_request(body), "j1", "h" * 64, NOW, LINKS)
    assert job_plan.job["usesTaskDependencies"] is True and job_plan.expected_tasks == sweep["end"] - sweep["start"] + 3
    ids = [t["id"] for chunk in job_plan.task_chunks() for t in chunk]
    assert ids[0] == "setup" and ids[-1] == "merge" and len(ids) == job_plan.expected_tasks
    *_, merge = job_plan.task_chunks()
    assert merge[-1]["dependsOn"] == merge_depends_on


def test_user_output_files_go_beside_the_crash_dump_uploads():
    out = {"filePattern": "results/**/*.csv", "containerUrl": "https://acct/results?sp=cw&sig=u", "path": "run-7",
           "uploadCondition": "taskSuccess"}
    body = req(tasks=[{"id": "a", "commandLine": "x", "outputFiles": [out]}], collect={"crashDumps": ["core*"]})
    (task,) = tasks_of(plan(parse_request(body), "j1", "h" * 64, NOW, LINKS))
    assert task["outputFiles"][0] == {"filePattern": "results/**/*.csv", "uploadOptions": {"uploadCondition": "tasksuccess"},
                                      "destination": {"container": {"containerUrl": out["containerUrl"], "path": "run-7"}}}
    assert [f["uploadOptions"]["uploadCondition"] for f in task["outputFiles"]] == ["tasksuccess", "taskfailure"]
