"""Microsoft's published Batch clients against the emulator, changed only in their configuration values.

Each runs our own driver that follows Azure-Samples/batch-python-quickstart's code path (upload inputs to
Blob storage, create a pool, a job and a task per input, wait for the tasks, print each task's stdout.txt),
under the azure-batch version the environment pins and so at that version's api-version.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.batch import client_venvs

DRIVER = Path(__file__).with_name("clients") / "quickstart.py"


@pytest.mark.parametrize(("client", "api_version"), [("batch-8", "2019-08-01.10.0"),
                                                     ("batch-11", "2021-06-01.14.0"),
                                                     ("batch-14", "2024-02-01.19.0")])
def test_quickstart_sample_runs_unmodified(batch_emulator, azurite_connection_string, batch_client, client,
                                           api_version):
    python = client_venvs.ensure(client)
    version = subprocess.run([str(python), "-c", "import azure.batch as b; print(b.BatchServiceClient("
                              "object(), 'http://x').job.api_version)"], capture_output=True, text=True, check=True)
    assert version.stdout.strip() == api_version, "the client speaks the api-version this test is about"
    suffix = uuid.uuid4().hex[:8]
    pool_id, job_id = f"PythonQuickstartPool-{suffix}", f"PythonQuickstartJob-{suffix}"
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "BATCH_ACCOUNT_URL": batch_emulator.url,
           "BATCH_ACCOUNT_NAME": batch_emulator.account, "BATCH_ACCOUNT_KEY": batch_emulator.key,
           "STORAGE_CONNECTION_STRING": azurite_connection_string, "POOL_ID": pool_id, "JOB_ID": job_id}
    run = subprocess.run([str(python), str(DRIVER)], env=env, capture_output=True, text=True, timeout=240)
    print(run.stdout)  # shown with -s, and by pytest when the test fails
    assert run.returncode == 0, run.stdout + run.stderr
    out = run.stdout
    assert "  Success! All tasks reached the 'Completed' state within the specified timeout period." in out
    for i in range(3):
        assert f"Task: Task{i}\n" in out
        assert f"Standard output:\nTask data file {i}: the quick brown fox.\n" in out
    assert out.count("Node: tvmps_") == 3
    assert "Sample end:" in out
