"""Application packages (https://learn.microsoft.com/azure/batch/batch-application-packages): a version added to
the linked storage (Azurite) with `python -m local.batch add-package`, listed by the applications routes, and
deployed on a node for the tasks that reference it, through AZ_BATCH_APP_PACKAGE_* variables."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import uuid
import zipfile
from pathlib import Path

import azure.batch.models as m
import pytest
from azure.core.exceptions import HttpResponseError

from local.batch.control import EmulatorProcess
from tests.batch.jobs import bash, create_job, terminate, wait_tasks_done


@pytest.fixture(scope="module")
def storage(azurite_connection_string):
    return azurite_connection_string


@pytest.fixture(scope="module")
def apps_client(tmp_path_factory, storage):
    base = tmp_path_factory.mktemp("batch-apps")
    workspace = Path(tempfile.mkdtemp(prefix="batch-apps-"))
    os.chmod(workspace, 0o755)
    emulator = EmulatorProcess(workspace, ["apps:1:2"], extra=["--app-storage", storage],
                               log_file=base / "emulator.log")
    client = emulator.start().client()
    yield client
    client.close()
    emulator.stop()
    shutil.rmtree(workspace, ignore_errors=True)


def add_package(storage: str, tmp_path: Path, app: str, version: str, greeting: str, default: bool = False):
    archive = tmp_path / f"{app}-{version}.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("hello.sh", f'echo "{greeting} $1"\n')
        run = zipfile.ZipInfo("bin/run")
        run.external_attr = 0o755 << 16
        zf.writestr(run, f"#!/bin/sh\necho run {version}\n")
    subprocess.run([sys.executable, "-m", "local.batch", "add-package", "--storage", storage, "--app", app,
                    "--version", version, "--zip", str(archive), *(["--default"] if default else [])],
                   check=True, capture_output=True)


@pytest.fixture(scope="module")
def app(storage, tmp_path_factory) -> str:
    """An application with versions 1.0 (the default) and 2.0-beta."""
    app_id = f"hello-{uuid.uuid4().hex[:6]}"
    folder = tmp_path_factory.mktemp("packages")
    add_package(storage, folder, app_id, "1.0", "hello", default=True)
    add_package(storage, folder, app_id, "2.0-beta", "bonjour")
    return app_id


def flat(text: str) -> str:
    return text.replace("-", "_").replace(".", "_")


def stdout(client, job_id: str, task_id: str) -> str:
    return b"".join(client.download_task_file(job_id, task_id, "stdout.txt")).decode()


def ref(app_id: str, version: str | None = None) -> m.BatchApplicationPackageReference:
    return m.BatchApplicationPackageReference(application_id=app_id, version=version)


def test_the_applications_routes_list_what_was_added(apps_client, app):
    listed = {a.id: a for a in apps_client.list_applications()}
    assert sorted(listed[app].versions) == ["1.0", "2.0-beta"]
    assert apps_client.get_application(app).versions == ["1.0", "2.0-beta"]
    with pytest.raises(HttpResponseError) as missing:
        apps_client.get_application("no-such-app")
    assert (missing.value.status_code, missing.value.error.code) == (404, "ApplicationNotFound")


def test_a_task_runs_its_package_through_its_variable(apps_client, app, job_id):
    create_job(apps_client, job_id, "apps")
    var = f"AZ_BATCH_APP_PACKAGE_{flat(app)}"
    apps_client.create_tasks(job_id, [
        m.BatchTaskCreateOptions(id="versioned", command_line=bash(f"bash ${var}_2_0_beta/hello.sh world"),
                                 application_package_references=[ref(app, "2.0-beta")]),
        m.BatchTaskCreateOptions(id="default", command_line=bash(f"bash ${var}/hello.sh world && ${var}/bin/run"),
                                 application_package_references=[ref(app)]),
        m.BatchTaskCreateOptions(id="no-version", command_line="/bin/true",
                                 application_package_references=[ref(app, "9.9")]),
        m.BatchTaskCreateOptions(id="no-app", command_line="/bin/true",
                                 application_package_references=[ref("no-such-app", "1.0")]),
    ])
    wait_tasks_done(apps_client, job_id, 4)
    assert stdout(apps_client, job_id, "versioned") == "bonjour world\n"
    assert stdout(apps_client, job_id, "default") == "hello world\nrun 1.0\n"
    for task_id, says in (("no-version", "no version '9.9'"), ("no-app", "'no-such-app' is not in the account")):
        info = apps_client.get_task(job_id, task_id).execution_info
        assert (info.result, info.failure_info.code) == ("failure", "ApplicationPackageNotFound"), task_id
        assert says in info.failure_info.message
    terminate(apps_client, job_id)


def test_pool_packages_reach_every_task_and_bad_ones_are_refused(apps_client, app, job_id):
    pool_id = f"apps-pool-{uuid.uuid4().hex[:6]}"
    var = f"AZ_BATCH_APP_PACKAGE_{flat(app)}_1_0"
    apps_client.create_pool(m.BatchPoolCreateOptions(
        id=pool_id, vm_size="standard_d2s_v3", target_dedicated_nodes=1,
        application_package_references=[ref(app, "1.0")],
        start_task=m.BatchStartTask(command_line=bash(f"bash ${var}/hello.sh start"))))
    try:
        create_job(apps_client, job_id, pool_id)
        apps_client.create_task(job_id, m.BatchTaskCreateOptions(
            id="t", command_line=bash(f"bash ${var}/hello.sh pool")))
        wait_tasks_done(apps_client, job_id, 1)
        assert stdout(apps_client, job_id, "t") == "hello pool\n"
        (node,) = apps_client.list_nodes(pool_id)
        assert b"".join(apps_client.download_node_file(pool_id, node.id, "startup/stdout.txt")) == b"hello start\n"
        terminate(apps_client, job_id)
    finally:
        apps_client.begin_delete_pool(pool_id, polling_interval=0.1).result()
    with pytest.raises(HttpResponseError) as refused:
        apps_client.create_pool(m.BatchPoolCreateOptions(
            id=f"bad-{pool_id}", vm_size="standard_d2s_v3", application_package_references=[ref(app, "7.0")]))
    assert (refused.value.status_code, refused.value.error.code) == (409, "InvalidApplicationPackageReferences")


@pytest.mark.parametrize(("app_id", "version", "name"), [
    ("blender", "2.7", "AZ_BATCH_APP_PACKAGE_blender_2_7"),
    ("Blender", None, "AZ_BATCH_APP_PACKAGE_Blender"),
    ("my-app", "1.0-rc#2", "AZ_BATCH_APP_PACKAGE_my_app_1_0_rc_2"),
    ("a_b", "v1", "AZ_BATCH_APP_PACKAGE_a_b_v1"),
])
def test_package_variables_are_named_as_on_linux_nodes(app_id, version, name):
    from local.batch.packages import env_name

    assert env_name(app_id, version) == name


@pytest.mark.parametrize(("refs", "expected"), [
    (None, []),
    ([{"applicationId": "blender"}], [{"applicationId": "blender"}]),
    ([{"applicationId": "/subscriptions/s/resourceGroups/g/providers/Microsoft.Batch/batchAccounts/a/applications/"
                        "blender", "version": "4.1"}], [{"applicationId": "blender", "version": "4.1"}]),
])
def test_package_references_are_read_as_batch_takes_them(refs, expected):
    from local.batch.packages import check_refs

    assert check_refs("applicationPackageReferences", refs) == expected


@pytest.mark.parametrize("refs", [{"applicationId": "x"}, [{"version": "1"}], [{"applicationId": "x", "version": 1}]])
def test_bad_package_references_are_refused(refs):
    from local.batch.errors import BatchError
    from local.batch.packages import check_refs

    with pytest.raises(BatchError) as caught:
        check_refs("applicationPackageReferences", refs)
    assert caught.value.code == "InvalidPropertyValue"
