"""Resource files downloaded from Azurite SAS URLs and outputFiles uploaded to a container SAS URL."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import azure.batch.models as m
import pytest
from azure.storage.blob import (
    BlobSasPermissions,
    ContainerSasPermissions,
    generate_blob_sas,
    generate_container_sas,
)

from local.azurite import ACCOUNT_KEY, ACCOUNT_NAME
from tests.batch.jobs import bash, create_job, wait_tasks_done


def test_resource_files_in_and_output_files_out(blob_service, batch_client, job_id):
    inputs = blob_service.create_container(f"in-{uuid.uuid4().hex[:8]}")
    outputs = blob_service.create_container(f"out-{uuid.uuid4().hex[:8]}")
    inputs.upload_blob("data/one.txt", b"first\n")
    inputs.upload_blob("data/two.txt", b"second\n")
    inputs.upload_blob("script.sh", b"cat data/one.txt data/two.txt > joined.txt\nexit 2\n")
    expiry = datetime.now(UTC) + timedelta(hours=1)
    read_list = generate_container_sas(ACCOUNT_NAME, inputs.container_name, ACCOUNT_KEY,
                                       permission=ContainerSasPermissions(read=True, list=True), expiry=expiry)
    script_sas = generate_blob_sas(ACCOUNT_NAME, inputs.container_name, "script.sh", account_key=ACCOUNT_KEY,
                                   permission=BlobSasPermissions(read=True), expiry=expiry)
    write_only = generate_container_sas(ACCOUNT_NAME, outputs.container_name, ACCOUNT_KEY,
                                        permission=ContainerSasPermissions(create=True, write=True), expiry=expiry)
    out_url = f"{outputs.url}?{write_only}"

    def upload(pattern: str, path: str, condition: str) -> m.OutputFile:
        return m.OutputFile(
            file_pattern=pattern,
            destination=m.OutputFileDestination(container=m.OutputFileBlobContainerDestination(
                container_url=out_url, path=path)),
            upload_options=m.OutputFileUploadConfiguration(upload_condition=condition))

    create_job(batch_client, job_id, "pool-2x4")
    batch_client.create_task(job_id, m.BatchTaskCreateOptions(
        id="join", command_line=bash("sh script.sh"),
        resource_files=[
            m.ResourceFile(storage_container_url=f"{inputs.url}?{read_list}", blob_prefix="data/", file_path="."),
            m.ResourceFile(http_url=f"{inputs.url}/script.sh?{script_sas}", file_path="script.sh"),
        ],
        output_files=[upload("joined.txt", f"{job_id}/joined.txt", "taskcompletion"),
                      upload("../std*.txt", f"{job_id}/std", "taskfailure"),
                      upload("joined.txt", f"{job_id}/never.txt", "tasksuccess")]))
    wait_tasks_done(batch_client, job_id, 1)
    info = batch_client.get_task(job_id, "join").execution_info
    assert (info.exit_code, info.failure_info.code) == (2, "FailureExitCode")
    names = sorted(b.name for b in outputs.list_blobs())
    assert names == [f"{job_id}/joined.txt", f"{job_id}/std/stderr.txt", f"{job_id}/std/stdout.txt"]
    assert outputs.download_blob(f"{job_id}/joined.txt").readall() == b"first\nsecond\n"


def test_missing_resource_file_fails_the_task_without_leaking_the_sas(blob_service, batch_client, job_id):
    container = blob_service.create_container(f"gone-{uuid.uuid4().hex[:8]}")
    sas = generate_blob_sas(ACCOUNT_NAME, container.container_name, "nope.bin", account_key=ACCOUNT_KEY,
                            permission=BlobSasPermissions(read=True),
                            expiry=datetime.now(UTC) + timedelta(hours=1))
    create_job(batch_client, job_id, "pool-2x4")
    batch_client.create_task(job_id, m.BatchTaskCreateOptions(
        id="t", command_line="/bin/true",
        resource_files=[m.ResourceFile(http_url=f"{container.url}/nope.bin?{sas}", file_path="nope.bin")]))
    wait_tasks_done(batch_client, job_id, 1)
    failure = batch_client.get_task(job_id, "t").execution_info.failure_info
    assert failure.code == "ResourceDownloadFailed"
    assert "sig=" not in failure.message and "404" in failure.message


@pytest.mark.parametrize(("command", "uploaded"), [
    ("echo result > result.txt", ["ok/result.txt"]),
    ("echo result > result.txt; exit 1", ["failed/result.txt"]),
])
def test_an_output_file_is_uploaded_only_under_its_condition(blob_service, batch_client, job_id, command, uploaded):
    outputs = blob_service.create_container(f"cond-{uuid.uuid4().hex[:8]}")
    sas = generate_container_sas(ACCOUNT_NAME, outputs.container_name, ACCOUNT_KEY,
                                 permission=ContainerSasPermissions(create=True, write=True),
                                 expiry=datetime.now(UTC) + timedelta(hours=1))

    def upload(path: str, condition: str) -> m.OutputFile:
        return m.OutputFile(file_pattern="result.txt", destination=m.OutputFileDestination(
            container=m.OutputFileBlobContainerDestination(container_url=f"{outputs.url}?{sas}", path=path)),
            upload_options=m.OutputFileUploadConfiguration(upload_condition=condition))

    create_job(batch_client, job_id, "pool-2x4")
    batch_client.create_task(job_id, m.BatchTaskCreateOptions(
        id="t", command_line=bash(command),
        output_files=[upload("ok/result.txt", "tasksuccess"), upload("failed/result.txt", "taskfailure")]))
    wait_tasks_done(batch_client, job_id, 1)
    assert sorted(b.name for b in outputs.list_blobs()) == uploaded
    assert outputs.download_blob(uploaded[0]).readall() == b"result\n"
