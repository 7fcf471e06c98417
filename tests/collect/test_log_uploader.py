import hashlib
import http.server
import importlib.util
import json
import os
import ssl
import subprocess
import sys
import threading
import urllib.error
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from azure.storage.blob import BlobServiceClient, ContainerSasPermissions, generate_container_sas

from local.azurite import ACCOUNT_KEY, ACCOUNT_NAME, Azurite
from shared.flows.collect import collect_blob
from tests.fixtures.imds import Imds
from tests.unit.dumps import elf_core

ROOT = Path(__file__).resolve().parents[2]
UPLOADER = ROOT / "shared" / "node" / "log_uploader.py"
_spec = importlib.util.spec_from_file_location("log_uploader", UPLOADER)
log_uploader = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(log_uploader)

JOB, NODE = "job-up", "tvmps_node_1_d"


def sas_url(container, **perms):
    token = generate_container_sas(ACCOUNT_NAME, container.name, account_key=ACCOUNT_KEY,
                                   permission=ContainerSasPermissions(**perms),
                                   expiry=datetime.now(UTC) + timedelta(hours=1))
    return f"{container.url}?{token}", token


@pytest.fixture
def node_dir(tmp_path):
    """A Batch node's directories for one job: two tasks, a log, a crash dump, a big and an empty file."""
    root = tmp_path / "batch"
    job = root / "workitems" / JOB / "job-1"
    files = {
        "job-1/t1/stdout.txt": b"hello from t1\n",
        "job-1/t1/stderr.txt": b"",
        "job-1/t2/stdout.txt": b"line\n" * 1000,
        "job-1/t2/stderr.txt": b"Traceback: boom\n",
        "job-1/t1/wd/app.log": b"ERROR first\nok\n",
        "job-1/t2/wd/core.42": elf_core(),
        "job-1/t2/wd/big.log": os.urandom(9 * 1024 * 1024 + 17),
    }
    for rel, data in files.items():
        path = root / "workitems" / JOB / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    outside = tmp_path / "var" / "app.log"
    outside.parent.mkdir(parents=True)
    outside.write_bytes(b"outside\n")
    files["abs" + str(outside)] = b"outside\n"
    assert job.exists()
    return root, outside, files


def run_uploader(root, url, *args):
    env = {"PATH": os.environ.get("PATH", ""), "AZ_BATCH_JOB_ID": JOB, "AZ_BATCH_NODE_ID": NODE,
           "AZ_BATCH_NODE_ROOT_DIR": str(root), "ORCHESTRATOR_LOGS_SAS_URL": url}
    return subprocess.run([sys.executable, str(UPLOADER), *args], env=env, capture_output=True, text=True,
                          timeout=120)


def test_uploads_everything_with_a_write_only_sas(containers, node_dir):
    logs, reports = containers
    root, outside, files = node_dir
    url, token = sas_url(logs, create=True, write=True)
    args = ["--logs", "job-1/*/wd/*.log", "--logs", str(outside), "--crash-dumps", "job-1/*/wd/core*"]
    proc = run_uploader(root, url, *args)
    assert proc.returncode == 0, proc.stderr
    assert token not in proc.stdout + proc.stderr and "sig=" not in proc.stderr

    names = {b.name for b in logs.list(f"{JOB}/{NODE}/")}
    expected = {f"{JOB}/{NODE}/{'crashdumps' if 'core' in rel else 'logs'}/{rel}" for rel in files}
    assert names == expected | {f"{JOB}/{NODE}/manifest.json"}
    for rel, data in files.items():
        kind = "crashdumps" if "core" in rel else "logs"
        assert logs.read(f"{JOB}/{NODE}/{kind}/{rel}", limit=2**40) == data, rel
    manifest = json.loads(logs.read(f"{JOB}/{NODE}/manifest.json", limit=2**40))
    assert manifest["failed"] == [] and len(manifest["files"]) == len(files)
    for entry in manifest["files"]:
        data = files[entry["path"].split("/", 1)[1]]
        assert (entry["size"], entry["sha256"]) == (len(data), hashlib.sha256(data).hexdigest())

    # Re-running overwrites the same names: nothing new appears.
    assert run_uploader(root, url, *args).returncode == 0
    assert {b.name for b in logs.list(f"{JOB}/{NODE}/")} == names

    # The collector then finds the node complete.
    results = [collect_blob(logs, reports, name) for name in sorted(names)]
    assert all(r["status"] in ("indexed", "manifest") for r in results)
    report = json.loads(reports.read(f"{JOB}/report.json", limit=2**40))
    assert report["collectionComplete"] is True and report["totals"]["crashDumps"] == 1


def test_sas_cannot_list_or_read(containers):
    logs, _ = containers
    url, _ = sas_url(logs, create=True, write=True)
    from azure.core.exceptions import HttpResponseError
    from azure.storage.blob import ContainerClient

    client = ContainerClient.from_container_url(url)
    client.upload_blob("probe", b"x")
    with pytest.raises(HttpResponseError):
        list(client.list_blobs())
    with pytest.raises(HttpResponseError):
        client.download_blob("probe").readall()


def test_failures_are_reported_and_exit_code_is_zero(containers, node_dir):
    logs, _ = containers
    root, _, _ = node_dir
    url, token = sas_url(logs, read=True)  # cannot write: every upload is refused
    proc = run_uploader(root, url)
    assert proc.returncode == 0
    assert token not in proc.stderr and "sig=" not in proc.stderr
    events = [json.loads(line) for line in proc.stderr.splitlines()]
    assert any(e["event"] == "upload.failed" and "403" in e["error"] for e in events)
    assert events[-1]["event"] == "upload.done" and events[-1]["uploaded"] == 0


def test_missing_configuration_still_exits_zero(tmp_path):
    proc = subprocess.run([sys.executable, str(UPLOADER)], env={"PATH": os.environ.get("PATH", "")},
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "upload.skipped" in proc.stderr


class _Flaky(http.server.BaseHTTPRequestHandler):
    script: list = []
    seen: list = []

    def do_PUT(self):  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        status = self.script.pop(0) if self.script else 201
        self.seen.append((status, self.path))
        if status == "drop":
            self.connection.close()
            return
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def flaky_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Flaky)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(
    ("script", "ok", "attempts"),
    [
        ([503, 500, 201], True, 3),
        ([429, 201], True, 2),
        (["drop", 201], True, 2),
        ([403], False, 1),
        ([404], False, 1),
        ([503] * 10, False, log_uploader.MAX_ATTEMPTS),
    ],
)
def test_retries_with_backoff(flaky_server, script, ok, attempts):
    _Flaky.script, _Flaky.seen = list(script), []
    delays = []
    container = log_uploader.Container(f"http://127.0.0.1:{flaky_server.server_port}/c?sig=SECRET",
                                       sleep=delays.append)
    try:
        container.put_blob("j/n/logs/a", b"data", "text/plain")
        succeeded = True
    except log_uploader.UploadError as exc:
        succeeded = False
        assert "SECRET" not in str(exc)
    assert succeeded is ok and len(_Flaky.seen) == attempts
    assert len(delays) == attempts - 1 and delays == sorted(delays)  # exponential, jitter within a step


def test_big_files_go_up_in_blocks(tmp_path, monkeypatch):
    calls = []

    class Recorder:
        def put_blob(self, name, body, content_type):
            calls.append(("blob", len(body)))

        def put_block(self, name, block_id, body):
            calls.append(("block", block_id, len(body)))

        def put_block_list(self, name, ids, content_type):
            calls.append(("list", len(ids)))

    monkeypatch.setattr(log_uploader, "BLOCK_SIZE", 10)
    monkeypatch.setattr(log_uploader, "SINGLE_PUT_MAX", 10)
    small, big = tmp_path / "s", tmp_path / "b"
    small.write_bytes(b"x" * 10)
    big.write_bytes(b"y" * 25)
    assert log_uploader.upload_file(Recorder(), small, "s", "t") == (10, hashlib.sha256(b"x" * 10).hexdigest())
    assert log_uploader.upload_file(Recorder(), big, "b", "t") == (25, hashlib.sha256(b"y" * 25).hexdigest())
    assert [c[0] for c in calls] == ["blob", "block", "block", "block", "list"]
    assert len({len(c[1]) for c in calls if c[0] == "block"}) == 1  # equal-length block ids


def test_time_budget_still_writes_the_manifest(containers, node_dir):
    logs, _ = containers
    root, _, files = node_dir
    url, _ = sas_url(logs, create=True, write=True)
    proc = run_uploader(root, url, "--budget-seconds", "0")
    assert proc.returncode == 0
    manifest = json.loads(logs.read(f"{JOB}/{NODE}/manifest.json", limit=2**40))
    assert manifest["files"] == [] and manifest["failed"]
    assert all("time budget" in f["error"] for f in manifest["failed"])


# ----- uploads with the pool's managed identity (Azurite over HTTPS with OAuth, an IMDS stand-in) -----

POOL_CLIENT_ID = "5f0c1d2e-pool-identity"


@pytest.fixture(scope="module")
def oauth_storage(tmp_path_factory):
    """Azurite accepting bearer tokens (HTTPS only), with a throwaway certificate the uploader trusts."""
    tls = tmp_path_factory.mktemp("tls")
    cert, key = tls / "cert.pem", tls / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=60)
    server = Azurite(cert=str(cert), key=str(key), oauth=True).start(timeout=60)
    try:
        yield BlobServiceClient.from_connection_string(server.connection_string, connection_verify=str(cert)), cert
    finally:
        server.stop()


@pytest.fixture
def identity_logs(oauth_storage):
    service, cert = oauth_storage
    logs = service.create_container(f"logs-{uuid.uuid4().hex[:12]}")
    yield logs, cert
    logs.delete_container()


def run_identity_uploader(root, container_url, client_id, imds_url, cert, *args):
    env = {"PATH": os.environ.get("PATH", ""), "AZ_BATCH_JOB_ID": JOB, "AZ_BATCH_NODE_ID": NODE,
           "AZ_BATCH_NODE_ROOT_DIR": str(root), "ORCHESTRATOR_LOGS_CONTAINER_URL": container_url,
           "ORCHESTRATOR_UPLOAD_CLIENT_ID": client_id, "ORCHESTRATOR_IMDS_URL": imds_url, "SSL_CERT_FILE": str(cert)}
    return subprocess.run([sys.executable, str(UPLOADER), *args], env=env, capture_output=True, text=True,
                          timeout=120)


def test_uploads_with_the_pools_managed_identity_and_no_sas(identity_logs, node_dir):
    logs, cert = identity_logs
    root, _, files = node_dir
    imds = Imds(POOL_CLIENT_ID).start()
    try:
        proc = run_identity_uploader(root, logs.url, POOL_CLIENT_ID, imds.url, cert,
                                     "--logs", "job-1/*/wd/*.log", "--crash-dumps", "job-1/*/wd/core*")
    finally:
        imds.stop()
    assert proc.returncode == 0, proc.stderr
    assert "eyJ" not in proc.stderr, "a token was logged"
    manifest = json.loads(logs.download_blob(f"{JOB}/{NODE}/manifest.json").readall())
    assert manifest["failed"] == []
    uploaded = {b.name for b in logs.list_blobs(name_starts_with=f"{JOB}/{NODE}/")}
    assert len(uploaded) == len(manifest["files"]) + 1 and len(manifest["files"]) >= 4
    # One token for the whole run, asked for the pool's identity and for Storage.
    assert imds.requests == [{"api-version": "2018-02-01", "resource": "https://storage.azure.com/",
                              "client_id": POOL_CLIENT_ID}]


def test_the_token_is_what_authorises_the_upload(identity_logs):
    logs, cert = identity_logs
    anonymous = urllib.request.Request(f"{logs.url}/probe", data=b"x", method="PUT",
                                       headers={"x-ms-blob-type": "BlockBlob", "x-ms-version": "2021-08-06"})
    context = ssl.create_default_context(cafile=str(cert))
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(anonymous, timeout=30, context=context)
    assert refused.value.code in (401, 403, 404)


@pytest.mark.parametrize(("imds_identity", "audience", "expected"), [
    ("someone-else", "https://storage.azure.com", "managed identity token: HTTP 400"),
    (POOL_CLIENT_ID, "https://vault.azure.net", "HTTP 403 AuthenticationFailed"),
])
def test_identity_problems_are_reported_per_file_and_exit_zero(identity_logs, node_dir, imds_identity, audience,
                                                               expected):
    logs, cert = identity_logs
    root, _, _ = node_dir
    imds = Imds(imds_identity, audience=audience).start()
    try:
        # Small files only: a refused upload of a multi-MiB block ends in a dropped connection (retried
        # with backoff) rather than the 403, which would only slow this test down.
        proc = run_identity_uploader(root, logs.url, POOL_CLIENT_ID, imds.url, cert, "--logs", "job-1/t1/wd/*.log")
    finally:
        imds.stop()
    assert proc.returncode == 0
    events = [json.loads(line) for line in proc.stderr.splitlines()]
    failures = [e for e in events if e["event"] == "upload.failed"]
    assert failures and all(e["error"].startswith(expected) for e in failures), failures
    assert events[-1] == {**events[-1], "event": "upload.done", "uploaded": 0}
    if imds_identity == POOL_CLIENT_ID:
        assert len(imds.requests) >= 2, "a refused token is replaced once before giving up"
