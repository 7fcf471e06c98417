"""Issue 14 through the whole submit path: what the request asks of Batch reaches Batch and is run so."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from azure.storage.blob import ContainerSasPermissions, generate_container_sas

from shared.flows.watchdog import Watchdog
from tests.orchestrator.conftest import request
from tests.orchestrator.test_flow import job_state, new_id, send
from tests.waiting import wait_until


def sweep_with_merge(job_id: str, fail: int | None = None) -> dict:
    body = request(job_id, tasks=1)
    body["taskFactory"] = {"type": "parametricSweep", "start": 1, "end": 6, "idFormat": "part-{0}",
                           "commandLine": "/bin/bash -c 'sleep 0.3; echo part {0} >> $AZ_BATCH_NODE_SHARED_DIR/parts; "
                                          f"test {{0}} -ne {fail if fail is not None else 0}'"}
    body["tasks"] = [{"id": "merge", "commandLine": "/bin/bash -c 'sort $AZ_BATCH_NODE_SHARED_DIR/parts'",
                      "dependsOn": {"taskFactory": True}}]
    return body


def test_a_merge_task_starts_only_after_every_sweep_task_succeeded(own_batch):
    svc, job_id = own_batch, new_id("merge")
    send(svc, sweep_with_merge(job_id))
    assert svc.batch.client.get_job(job_id).uses_task_dependencies is True
    wait_until(lambda: job_state(svc, job_id) == "completed", 90, what="the job to complete")
    tasks = {t.id: t for t in svc.batch.tasks(job_id)}
    merge, parts = tasks.pop("merge"), list(tasks.values())
    assert len(parts) == 6 and all(t.result == "success" for t in parts) and merge.result == "success"
    assert merge.start_time >= max(t.end_time for t in parts)
    Watchdog(svc.batch, svc.store).sweep(datetime.now(UTC))
    kinds = svc.store.report(job_id)["setup"]["kinds"]
    assert [(k["name"], k["tasks"], k.get("waitsFor")) for k in kinds] == [
        ("sweep part-{0}", 6, None), ("merge", 1, ["the whole sweep"])]


def test_a_failed_sweep_task_keeps_the_merge_from_starting(own_batch):
    svc, job_id = own_batch, new_id("blocked")
    send(svc, sweep_with_merge(job_id, fail=3))
    wait_until(lambda: svc.batch.task_counts(job_id).completed == 6, 90, what="the sweep to end")
    merge = next(t for t in svc.batch.tasks(job_id) if t.id == "merge")
    assert (merge.state, merge.start_time) == ("active", None), "blocked by part-3's failure, as Batch blocks it"
    assert job_state(svc, job_id) == "active"
    svc.batch.terminate(job_id, "UserTerminate")


def test_an_output_file_is_uploaded_on_success_only(own_batch):
    svc, job_id = own_batch, new_id("outputs")
    container = svc.store.logs._client._get_blob_service_client().create_container(f"results-{uuid.uuid4().hex[:8]}")
    sas = generate_container_sas(container.account_name, container.container_name,
                                 account_key=container.credential.account_key,
                                 permission=ContainerSasPermissions(write=True, create=True),
                                 expiry=datetime.now(UTC) + timedelta(hours=1))
    out = [{"filePattern": "out/*.csv", "containerUrl": f"{container.url}?{sas}", "path": "{0}",
            "uploadCondition": "taskSuccess"}]
    body = request(job_id, tasks=1)
    body["taskFactory"] = {"type": "parametricSweep", "start": 1, "end": 2, "idFormat": "t-{0}", "outputFiles": out,
                           "commandLine": "/bin/bash -c 'mkdir -p out; echo r{0} > out/r{0}.csv; test {0} -eq 1'"}
    send(svc, body)
    wait_until(lambda: job_state(svc, job_id) == "completed", 90, what="the job to complete")
    assert [b.name for b in container.list_blobs()] == ["1/r1.csv"], "t-2 failed: its result is not uploaded"
    assert container.download_blob("1/r1.csv").readall() == b"r1\n"


def test_identities_retention_and_reboot_rules_reach_batch_as_sent(own_batch):
    svc, job_id = own_batch, new_id("rules")
    body = request(job_id, pool="pool-empty", tasks=1)
    body["preparation"].update({"userIdentity": {"autoUser": {"scope": "pool", "elevationLevel": "admin"}},
                                "retentionTime": "PT2H", "rerunOnNodeRebootAfterSuccess": False})
    body["release"]["retentionTime"] = "PT1H"
    body["taskFactory"]["retentionTime"] = "PT30M"
    send(svc, body)
    job = svc.batch.client.get_job(job_id)
    prep, release = job.job_preparation_task, job.job_release_task
    assert (prep.user_identity.auto_user.elevation_level, prep.rerun_on_node_reboot_after_success) == ("admin", False)
    assert (prep.constraints.retention_time, release.retention_time) == (timedelta(hours=2), timedelta(hours=1))
    (task,) = svc.batch.client.list_tasks(job_id)
    assert task.constraints.retention_time == timedelta(minutes=30)
    svc.batch.terminate(job_id, "UserTerminate")


def test_a_task_runs_its_application_packages_program_through_the_variable(own_batch, azurite, tmp_path):
    import subprocess
    import sys
    import zipfile

    app_id = f"hello{uuid.uuid4().hex[:6]}"
    archive = tmp_path / "hello.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        script = zipfile.ZipInfo("bin/hello")
        script.external_attr = 0o755 << 16
        zf.writestr(script, "#!/bin/sh\necho hello from $1\n")
    subprocess.run([sys.executable, "-m", "local.batch", "add-package", "--storage", azurite.connection_string,
                    "--app", app_id, "--version", "2.0", "--zip", str(archive)], check=True, capture_output=True)
    svc, job_id = own_batch, new_id("package")
    body = request(job_id, tasks=1)
    body["taskFactory"].update({"applicationPackageReferences": [{"applicationId": app_id, "version": "2.0"}],
                                "commandLine": f"/bin/bash -c '$AZ_BATCH_APP_PACKAGE_{app_id}_2_0/bin/hello task-{{0}}'"})
    send(svc, body)
    wait_until(lambda: job_state(svc, job_id) == "completed", 90, what="the job to complete")
    (task,) = svc.batch.tasks(job_id)
    assert task.result == "success"
    stdout = b"".join(svc.batch.client.download_task_file(job_id, task.id, "stdout.txt"))
    assert stdout == b"hello from task-1\n"
