"""Tasks run as the account their userIdentity names (https://learn.microsoft.com/azure/batch/batch-user-accounts):
an admin auto-user as root, a non-admin one (Batch's default) as an unprivileged account of the emulator, a named
user account of the pool as its own account; an unknown user name fails the task."""

from __future__ import annotations

import os
import pwd
import shutil
import tempfile
from pathlib import Path

import azure.batch.models as m
import pytest

from local.batch.identity import POOL_ACCOUNT, TASK_ACCOUNT, USER_PREFIX
from tests.batch.jobs import bash, create_job, tasks, terminate, wait_tasks_done

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="the emulator switches users only when it runs as "
                                "root; otherwise every task runs as the emulator's own user (README)")

WHO = "whoami; id -u"


def auto(scope: str, level: str) -> m.UserIdentity:
    return m.UserIdentity(auto_user=m.AutoUserSpecification(scope=scope, elevation_level=level))


def stdout(client, job_id: str, task_id: str) -> str:
    return b"".join(client.download_task_file(job_id, task_id, "stdout.txt")).decode()


@pytest.fixture
def locked():
    """A folder only root may write to (root-owned, mode 0755), which everyone may enter."""
    folder = Path(tempfile.mkdtemp(prefix="batch-locked-"))
    os.chmod(folder, 0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@needs_root
def test_admin_prep_writes_where_a_plain_task_cannot(batch_client, job_id, make_pool, locked):
    pool = make_pool(1, 1)
    create_job(batch_client, job_id, pool, prep=bash(f"{WHO}; touch {locked}/by-prep"),
               prep_options={"user_identity": auto("pool", "admin")})
    batch_client.create_tasks(job_id, tasks(("plain", bash(f"{WHO}; touch {locked}/by-task"))))
    wait_tasks_done(batch_client, job_id, 1)
    (node,) = batch_client.list_nodes(pool)
    prep_out = b"".join(batch_client.download_node_file(
        pool, node.id, f"workitems/{job_id}/job-1/jobpreparation/stdout.txt")).decode()
    assert prep_out == "root\n0\n"
    assert (locked / "by-prep").exists()
    info = batch_client.get_task(job_id, "plain").execution_info
    assert (info.exit_code, info.failure_info.code) == (1, "FailureExitCode")
    assert "Permission denied" in b"".join(batch_client.download_task_file(job_id, "plain", "stderr.txt")).decode()
    assert stdout(batch_client, job_id, "plain") == f"{POOL_ACCOUNT}\n{pwd.getpwnam(POOL_ACCOUNT).pw_uid}\n"
    assert not (locked / "by-task").exists()
    terminate(batch_client, job_id)


@needs_root
def test_each_identity_runs_as_its_own_account(batch_client, job_id, make_pool):
    pool = make_pool(1, 2, user_accounts=[
        m.UserAccount(name="Alice", password="not-a-secret-1", elevation_level="nonadmin"),
        m.UserAccount(name="boss", password="not-a-secret-2", elevation_level="admin")])
    create_job(batch_client, job_id, pool)
    batch_client.create_tasks(job_id, [
        m.BatchTaskCreateOptions(id="default", command_line=bash(WHO)),
        m.BatchTaskCreateOptions(id="task-scope", command_line=bash(WHO), user_identity=auto("task", "nonadmin")),
        m.BatchTaskCreateOptions(id="named", command_line=bash(WHO), user_identity=m.UserIdentity(username="alice")),
        m.BatchTaskCreateOptions(id="named-admin", command_line=bash(WHO),
                                 user_identity=m.UserIdentity(username="boss")),
        m.BatchTaskCreateOptions(id="unknown", command_line=bash(WHO), user_identity=m.UserIdentity(username="bob")),
    ])
    wait_tasks_done(batch_client, job_id, 5)
    for task_id, account in (("default", POOL_ACCOUNT), ("task-scope", TASK_ACCOUNT),
                             ("named", USER_PREFIX + "alice"), ("named-admin", "root")):
        assert stdout(batch_client, job_id, task_id) == f"{account}\n{pwd.getpwnam(account).pw_uid}\n", task_id
    listed = batch_client.get_pool(pool).user_accounts
    assert [(a.name, a.elevation_level, a.password) for a in listed] == [("Alice", "nonadmin", None),
                                                                         ("boss", "admin", None)]
    failure = batch_client.get_task(job_id, "unknown").execution_info.failure_info
    assert (failure.category, failure.code) == ("usererror", "UserAccountNotFound")
    assert "'bob'" in failure.message
    terminate(batch_client, job_id)


def test_a_task_may_write_its_own_directory_and_the_shared_one(batch_client, job_id, make_pool):
    pool = make_pool(1, 1)
    create_job(batch_client, job_id, pool, prep=bash("echo prep > $AZ_BATCH_NODE_SHARED_DIR/from-prep"))
    batch_client.create_tasks(job_id, tasks(("t", bash(
        "cat $AZ_BATCH_NODE_SHARED_DIR/from-prep > mine && echo task >> $AZ_BATCH_NODE_SHARED_DIR/from-prep"
        " && cat mine $AZ_BATCH_NODE_SHARED_DIR/from-prep"))))
    wait_tasks_done(batch_client, job_id, 1)
    assert batch_client.get_task(job_id, "t").execution_info.exit_code == 0
    assert stdout(batch_client, job_id, "t") == "prep\nprep\ntask\n"
    terminate(batch_client, job_id)


@pytest.mark.parametrize(("identity", "reason"), [
    ({"username": "a", "autoUser": {"scope": "pool"}}, "exactly one"),
    ({"autoUser": {"scope": "node"}}, "pool or task"),
    ({"autoUser": {"elevationLevel": "root"}}, "nonadmin or admin"),
])
def test_bad_identities_are_refused(identity, reason):
    from local.batch.errors import BatchError
    from local.batch.identity import check_identity

    with pytest.raises(BatchError) as caught:
        check_identity("userIdentity", identity)
    assert caught.value.code == "InvalidPropertyValue" and reason in caught.value.values["Reason"]


@pytest.mark.parametrize(("accounts", "reason"), [
    ([{"name": "a" * 21, "password": "p"}], "1 to 20"),
    ([{"name": "al ice", "password": "p"}], "1 to 20"),
    ([{"name": "alice"}], "needs a password"),
    ([{"name": "alice", "password": "p"}, {"name": "ALICE", "password": "q"}], "unique"),
    ([{"name": "alice", "password": "p", "elevationLevel": "root"}], "nonadmin or admin"),
    ([{"name": "alice", "password": "p", "linuxUserConfiguration": {"uid": 1234, "gid": 1234}}], "not supported"),
])
def test_bad_user_accounts_are_refused(accounts, reason):
    from local.batch.errors import BatchError
    from local.batch.identity import check_user_accounts

    with pytest.raises(BatchError) as caught:
        check_user_accounts(accounts)
    assert caught.value.code == "InvalidPropertyValue" and reason in caught.value.values["Reason"]


def test_without_switching_every_identity_runs_as_the_emulator_user_but_unknown_users_still_fail():
    from local.batch.identity import Identities

    identities = Identities(switch_users=False)
    me = pwd.getpwuid(os.geteuid()).pw_name
    accounts = [{"name": "alice", "elevationLevel": "nonadmin"}]
    for identity in (None, {"autoUser": {"scope": "task", "elevationLevel": "admin"}}, {"username": "ALICE"}):
        assert identities.run_as(identity, accounts, "p").name == me
    assert identities.run_as({"username": "bob"}, accounts, "p")["code"] == "UserAccountNotFound"


@needs_root
def test_links_a_task_leaves_behind_are_not_followed_as_root(batch_client, job_id, make_pool, locked, scratch,
                                                             blob_service):
    from datetime import UTC, datetime, timedelta

    from azure.storage.blob import ContainerSasPermissions, generate_container_sas

    from local.azurite import ACCOUNT_KEY, ACCOUNT_NAME

    victim, secret = locked / "victim", locked / "secret"
    victim.write_text("intact\n")
    secret.write_text("root only\n")
    secret.chmod(0o600)
    outputs = blob_service.create_container(f"links-{job_id[-8:]}")
    sas = generate_container_sas(ACCOUNT_NAME, outputs.container_name, ACCOUNT_KEY,
                                 permission=ContainerSasPermissions(create=True, write=True),
                                 expiry=datetime.now(UTC) + timedelta(hours=1))
    pool = make_pool(1, 1)
    create_job(batch_client, job_id, pool)
    # The first attempt swaps its stdout.txt for a link to a file only root may write, and links a root-only file
    # as an output; the retry must write its own stdout.txt, and nothing root-only is uploaded.
    first = f"[ -e {scratch}/tried ] || {{ touch {scratch}/tried; ln -sf {victim} ../stdout.txt; exit 1; }}"
    batch_client.create_task(job_id, m.BatchTaskCreateOptions(
        id="t", command_line=bash(f"{first}; ln -sf {secret} secret; echo second"),
        constraints=m.BatchTaskConstraints(max_task_retry_count=1),
        output_files=[m.OutputFile(file_pattern="secret", destination=m.OutputFileDestination(
            container=m.OutputFileBlobContainerDestination(container_url=f"{outputs.url}?{sas}", path="secret")),
            upload_options=m.OutputFileUploadConfiguration(upload_condition="taskcompletion"))]))
    wait_tasks_done(batch_client, job_id, 1)
    info = batch_client.get_task(job_id, "t").execution_info
    assert (info.retry_count, info.exit_code) == (1, 0)
    assert stdout(batch_client, job_id, "t") == "second\n"
    assert victim.read_text() == "intact\n"
    assert list(outputs.list_blobs()) == []
    terminate(batch_client, job_id)
