"""Our own driver that follows Azure-Samples/batch-python-quickstart (src/python_quickstart_client.py) step by step,
with the track 1 azure-batch client (BatchServiceClient + SharedKeyCredentials) the sample is written for.

Runs under a client virtual environment (tests/batch/client_venvs.py), never the project's: it imports only
azure-batch and azure-storage-blob at the versions that environment pins. Configuration comes from the
environment, as the sample's config.py would hold it. It prints what the sample prints, so the test can assert
the sample's own success output. The sample's closing yes/no prompts are answered "yes" (delete job and pool).
"""

from __future__ import annotations

import datetime
import io
import os
import sys
import tempfile
import time

import azure.batch.models as batchmodels
from azure.batch import BatchServiceClient
from azure.batch.batch_auth import SharedKeyCredentials
from azure.storage.blob import BlobSasPermissions, BlobServiceClient, generate_blob_sas

BATCH_ACCOUNT_URL = os.environ["BATCH_ACCOUNT_URL"]
BATCH_ACCOUNT_NAME = os.environ["BATCH_ACCOUNT_NAME"]
BATCH_ACCOUNT_KEY = os.environ["BATCH_ACCOUNT_KEY"]
STORAGE_CONNECTION_STRING = os.environ["STORAGE_CONNECTION_STRING"]
POOL_ID = os.environ["POOL_ID"]
JOB_ID = os.environ["JOB_ID"]
POOL_NODE_COUNT = 2
POOL_VM_SIZE = "STANDARD_DS1_V2"
STANDARD_OUT_FILE_NAME = "stdout.txt"


def upload_file_to_container(blob_service_client: BlobServiceClient, container_name: str, file_path: str):
    """Upload one input file and give it to Batch as a resource file behind a read-only SAS URL."""
    blob_name = os.path.basename(file_path)
    print(f"Uploading file {file_path} to container [{container_name}]...")
    blob_client = blob_service_client.get_blob_client(container_name, blob_name)
    with open(file_path, "rb") as data:
        blob_client.upload_blob(data, overwrite=True)
    sas_token = generate_blob_sas(blob_service_client.account_name, container_name, blob_name,
                                  account_key=blob_service_client.credential.account_key,
                                  permission=BlobSasPermissions(read=True),
                                  expiry=datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=2))
    return batchmodels.ResourceFile(http_url=f"{blob_client.url}?{sas_token}", file_path=blob_name)


def create_pool(batch_client: BatchServiceClient, pool_id: str) -> None:
    print(f"Creating pool [{pool_id}]...")
    new_pool = batchmodels.PoolAddParameter(
        id=pool_id,
        virtual_machine_configuration=batchmodels.VirtualMachineConfiguration(
            image_reference=batchmodels.ImageReference(publisher="canonical", offer="0001-com-ubuntu-server-focal",
                                                       sku="20_04-lts", version="latest"),
            node_agent_sku_id="batch.node.ubuntu 20.04"),
        vm_size=POOL_VM_SIZE,
        target_dedicated_nodes=POOL_NODE_COUNT)
    batch_client.pool.add(new_pool)


def create_job(batch_client: BatchServiceClient, job_id: str, pool_id: str) -> None:
    print(f"Creating job [{job_id}]...")
    batch_client.job.add(batchmodels.JobAddParameter(id=job_id,
                                                     pool_info=batchmodels.PoolInformation(pool_id=pool_id)))


def add_tasks(batch_client: BatchServiceClient, job_id: str, resource_input_files: list) -> None:
    print(f"Adding {len(resource_input_files)} tasks to job [{job_id}]...")
    tasks = [batchmodels.TaskAddParameter(id=f"Task{idx}", command_line=f'/bin/bash -c "cat {input_file.file_path}"',
                                          resource_files=[input_file])
             for idx, input_file in enumerate(resource_input_files)]
    batch_client.task.add_collection(job_id, tasks)


def wait_for_tasks_to_complete(batch_client: BatchServiceClient, job_id: str, timeout: datetime.timedelta) -> None:
    deadline = datetime.datetime.now() + timeout
    print(f"Monitoring all tasks for 'Completed' state, timeout in {timeout}...", end="")
    while datetime.datetime.now() < deadline:
        print(".", end="")
        sys.stdout.flush()
        incomplete = [t for t in batch_client.task.list(job_id) if t.state != batchmodels.TaskState.completed]
        if not incomplete:
            print()
            return
        time.sleep(1)  # the sample polls once a second
    print()
    raise RuntimeError(f"ERROR: Tasks did not reach 'Completed' state within timeout period of {timeout}")


def print_task_output(batch_client: BatchServiceClient, job_id: str) -> None:
    print("Printing task output...")
    for task in batch_client.task.list(job_id):
        node_id = batch_client.task.get(job_id, task.id).node_info.node_id
        print(f"Task: {task.id}")
        print(f"Node: {node_id}")
        stream = batch_client.file.get_from_task(job_id, task.id, STANDARD_OUT_FILE_NAME)
        output = io.BytesIO()
        for data in stream:
            output.write(data)
        print("Standard output:")
        print(output.getvalue().decode("utf-8"))


def print_batch_exception(batch_exception) -> None:
    print("-------------------------------------------")
    print("Exception encountered:")
    if batch_exception.error and batch_exception.error.message and batch_exception.error.message.value:
        print(batch_exception.error.message.value)
        for mesg in batch_exception.error.values or []:
            print(f"{mesg.key}:\t{mesg.value}")
    print("-------------------------------------------")


def main() -> None:
    start_time = datetime.datetime.now().replace(microsecond=0)
    print(f"Sample start: {start_time}")
    print()
    blob_service_client = BlobServiceClient.from_connection_string(STORAGE_CONNECTION_STRING)
    input_container_name = f"input-{JOB_ID.lower()}"[:63]
    blob_service_client.create_container(input_container_name)
    with tempfile.TemporaryDirectory() as folder:
        input_file_paths = []
        for i in range(3):
            path = os.path.join(folder, f"taskdata{i}.txt")
            with open(path, "w") as fh:
                fh.write(f"Task data file {i}: the quick brown fox.\n")
            input_file_paths.append(path)
        input_files = [upload_file_to_container(blob_service_client, input_container_name, p)
                       for p in input_file_paths]
    batch_client = BatchServiceClient(SharedKeyCredentials(BATCH_ACCOUNT_NAME, BATCH_ACCOUNT_KEY),
                                      batch_url=BATCH_ACCOUNT_URL)
    try:
        create_pool(batch_client, POOL_ID)
        create_job(batch_client, JOB_ID, POOL_ID)
        add_tasks(batch_client, JOB_ID, input_files)
        wait_for_tasks_to_complete(batch_client, JOB_ID, datetime.timedelta(minutes=30))
        print("  Success! All tasks reached the 'Completed' state within the specified timeout period.")
        print_task_output(batch_client, JOB_ID)
    except batchmodels.BatchErrorException as err:
        print_batch_exception(err)
        raise
    print(f"Deleting container [{input_container_name}]...")
    blob_service_client.delete_container(input_container_name)
    end_time = datetime.datetime.now().replace(microsecond=0)
    print()
    print(f"Sample end: {end_time}")
    print(f"Elapsed time: {end_time - start_time}")
    print()
    batch_client.job.delete(JOB_ID)
    batch_client.pool.delete(POOL_ID)


if __name__ == "__main__":
    main()
