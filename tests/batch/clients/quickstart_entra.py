"""Our own driver that follows Azure-Samples/batch-python-quickstart's code path with today's client: azure-batch 15
(BatchClient) signed in with DefaultAzureCredential, as Microsoft's current samples sign in, over https.

Run with the project's environment. Configuration comes from the environment as a user would set it:
BATCH_ACCOUNT_URL (https), REQUESTS_CA_BUNDLE (the emulator's development CA), IDENTITY_ENDPOINT and
IDENTITY_HEADER (the managed identity endpoint DefaultAzureCredential finds), STORAGE_CONNECTION_STRING,
POOL_ID, JOB_ID. It prints what the sample prints.
"""

from __future__ import annotations

import datetime
import os
import sys
import tempfile
import time

import azure.batch.models as batchmodels
from azure.batch import BatchClient
from azure.core.exceptions import HttpResponseError
from azure.identity import DefaultAzureCredential
from azure.storage.blob import BlobSasPermissions, BlobServiceClient, generate_blob_sas

POOL_ID, JOB_ID = os.environ["POOL_ID"], os.environ["JOB_ID"]


def upload_file_to_container(blob_service_client: BlobServiceClient, container_name: str, file_path: str):
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


def main() -> None:
    print(f"Sample start: {datetime.datetime.now().replace(microsecond=0)}")
    print()
    blob_service_client = BlobServiceClient.from_connection_string(os.environ["STORAGE_CONNECTION_STRING"])
    container = f"input-{JOB_ID.lower()}"[:63]
    blob_service_client.create_container(container)
    with tempfile.TemporaryDirectory() as folder:
        paths = []
        for i in range(3):
            paths.append(os.path.join(folder, f"taskdata{i}.txt"))
            with open(paths[-1], "w") as fh:
                fh.write(f"Task data file {i}: signed in with Entra ID.\n")
        input_files = [upload_file_to_container(blob_service_client, container, p) for p in paths]
    batch_client = BatchClient(os.environ["BATCH_ACCOUNT_URL"], DefaultAzureCredential())
    try:
        print(f"Creating pool [{POOL_ID}]...")
        batch_client.create_pool(batchmodels.BatchPoolCreateOptions(
            id=POOL_ID, vm_size="STANDARD_DS1_V2", target_dedicated_nodes=2,
            virtual_machine_configuration=batchmodels.VirtualMachineConfiguration(
                image_reference=batchmodels.BatchVmImageReference(
                    publisher="canonical", offer="0001-com-ubuntu-server-jammy", sku="22_04-lts", version="latest"),
                node_agent_sku_id="batch.node.ubuntu 22.04")))
        print(f"Creating job [{JOB_ID}]...")
        batch_client.create_job(batchmodels.BatchJobCreateOptions(
            id=JOB_ID, pool_info=batchmodels.BatchPoolInfo(pool_id=POOL_ID)))
        print(f"Adding {len(input_files)} tasks to job [{JOB_ID}]...")
        batch_client.create_tasks(JOB_ID, [batchmodels.BatchTaskCreateOptions(
            id=f"Task{i}", command_line=f'/bin/bash -c "cat {f.file_path}"', resource_files=[f])
            for i, f in enumerate(input_files)])
        timeout = datetime.timedelta(minutes=30)
        deadline = datetime.datetime.now() + timeout
        print(f"Monitoring all tasks for 'Completed' state, timeout in {timeout}...", end="")
        while True:
            print(".", end="")
            sys.stdout.flush()
            if all(t.state == batchmodels.BatchTaskState.COMPLETED for t in batch_client.list_tasks(JOB_ID)):
                print()
                break
            if datetime.datetime.now() > deadline:
                raise RuntimeError(f"ERROR: Tasks did not reach 'Completed' state within timeout period of {timeout}")
            time.sleep(1)  # the sample polls once a second
        print("  Success! All tasks reached the 'Completed' state within the specified timeout period.")
        print("Printing task output...")
        for task in batch_client.list_tasks(JOB_ID):
            print(f"Task: {task.id}")
            print(f"Node: {batch_client.get_task(JOB_ID, task.id).node_info.node_id}")
            print("Standard output:")
            print(b"".join(batch_client.download_task_file(JOB_ID, task.id, "stdout.txt")).decode())
    except HttpResponseError as err:
        print(f"Exception encountered: {err.message}")
        raise
    print(f"Deleting container [{container}]...")
    blob_service_client.delete_container(container)
    print()
    print(f"Sample end: {datetime.datetime.now().replace(microsecond=0)}")
    batch_client.begin_delete_job(JOB_ID, polling_interval=0.2).result()
    batch_client.begin_delete_pool(POOL_ID, polling_interval=0.2).result()


if __name__ == "__main__":
    main()
