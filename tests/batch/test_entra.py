"""Entra ID over https: the emulator serves TLS with its development certificate, DefaultAzureCredential gets a
token from its managed identity endpoint, and bad tokens are refused as Batch refuses them; Shared Key still works."""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from urllib.parse import quote

import pytest

from local.batch.control import EmulatorProcess
from local.batch.entra import BATCH_AUDIENCE

DRIVER = Path(__file__).with_name("clients") / "quickstart_entra.py"


@pytest.fixture(scope="module")
def tls_emulator(tmp_path_factory):
    base = tmp_path_factory.mktemp("batch-tls")
    emulator = EmulatorProcess(base / "workspace", [], extra=["--tls"], log_file=base / "emulator.log")
    endpoint = emulator.start()
    yield endpoint
    emulator.stop()


def token(endpoint, resource: str, lifetime: int | None = None) -> str:
    query = f"?api-version=2019-08-01&resource={quote(resource)}" + (f"&lifetime={lifetime}" if lifetime else "")
    request = urllib.request.Request(endpoint.identity_endpoint + query,
                                     headers={"X-IDENTITY-HEADER": endpoint.identity_header})
    with urllib.request.urlopen(request, context=ssl.create_default_context(cafile=endpoint.ca)) as resp:
        return json.loads(resp.read())["access_token"]


def bearer_get(endpoint, path: str, bearer: str) -> tuple[int, dict]:
    request = urllib.request.Request(f"{endpoint.url}{path}", headers={"Authorization": f"Bearer {bearer}"})
    try:
        with urllib.request.urlopen(request, context=ssl.create_default_context(cafile=endpoint.ca)) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_default_azure_credential_runs_the_quickstart_over_https(tls_emulator, azurite_connection_string):
    assert tls_emulator.url.startswith("https://127.0.0.1:")
    suffix = uuid.uuid4().hex[:8]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE_", "MSI_", "IDENTITY_"))}
    env.update({"BATCH_ACCOUNT_URL": tls_emulator.url, "REQUESTS_CA_BUNDLE": tls_emulator.ca,
                "IDENTITY_ENDPOINT": tls_emulator.identity_endpoint, "IDENTITY_HEADER": tls_emulator.identity_header,
                "STORAGE_CONNECTION_STRING": azurite_connection_string,
                "POOL_ID": f"EntraPool-{suffix}", "JOB_ID": f"EntraJob-{suffix}"})
    run = subprocess.run([sys.executable, str(DRIVER)], env=env, capture_output=True, text=True, timeout=240)
    print(run.stdout)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "  Success! All tasks reached the 'Completed' state within the specified timeout period." in run.stdout
    for i in range(3):
        assert f"Task: Task{i}\n" in run.stdout
        assert f"Standard output:\nTask data file {i}: signed in with Entra ID.\n" in run.stdout


@pytest.mark.parametrize(("make", "detail_starts"), [
    (lambda e: token(e, "https://management.azure.com/"),
     "The access token has been obtained from wrong audience or resource 'https://management.azure.com/'"),
    (lambda e: token(e, "https://batch.core.windows.net"),
     "The access token has been obtained from wrong audience or resource 'https://batch.core.windows.net'"),
    (lambda e: token(e, BATCH_AUDIENCE, lifetime=-60), "The access token expiry time"),
    (lambda e: token(e, BATCH_AUDIENCE)[:-4] + "AAAA", "The access token's signature is invalid"),
    (lambda e: "not-a-jwt", "The access token is not a valid JWT."),
])
def test_bad_tokens_are_refused_as_batch_refuses_them(tls_emulator, make, detail_starts):
    status, body = bearer_get(tls_emulator, "/pools?api-version=2025-06-01", make(tls_emulator))
    assert (status, body["code"]) == (401, "AuthenticationFailed")
    (detail,) = [v["value"] for v in body["values"] if v["key"] == "AuthenticationErrorDetail"]
    assert detail.startswith(detail_starts)


def test_good_token_and_shared_key_both_work_over_https(tls_emulator):
    status, body = bearer_get(tls_emulator, "/pools?api-version=2025-06-01", token(tls_emulator, BATCH_AUDIENCE))
    assert (status, body["value"]) == (200, [])
    client = tls_emulator.client(connection_verify=tls_emulator.ca)
    assert list(client.list_pools()) == []
    client.close()


def test_the_token_endpoint_needs_the_identity_header(tls_emulator):
    request = urllib.request.Request(f"{tls_emulator.identity_endpoint}?resource={quote(BATCH_AUDIENCE)}",
                                     headers={"X-IDENTITY-HEADER": "wrong"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, context=ssl.create_default_context(cafile=tls_emulator.ca))
    assert refused.value.code == 401
