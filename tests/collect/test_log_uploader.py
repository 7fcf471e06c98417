import gzip
import hashlib
import http.server
import importlib.util
import io
import json
import os
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from azure.storage.blob import BlobServiceClient, ContainerSasPermissions, generate_container_sas

from local.azurite import ACCOUNT_KEY, ACCOUNT_NAME, Azurite
from shared.flows.collect import on_manifest
from tests.fixtures.imds import Imds
from tests.unit.dumps import elf_core
from tests.waiting import wait_until

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


def uploader_env(root, **extra: str) -> dict[str, str]:
    """What Batch gives the release task (its job, its node, the node's root), plus `extra`."""
    return {"PATH": os.environ.get("PATH", ""), "AZ_BATCH_JOB_ID": JOB, "AZ_BATCH_NODE_ID": NODE,
            "AZ_BATCH_NODE_ROOT_DIR": str(root), **extra}


def run_uploader(root, url, *args, env=None):
    env = uploader_env(root, ORCHESTRATOR_LOGS_SAS_URL=url, **(env or {}))
    return subprocess.run([sys.executable, str(UPLOADER), *args], env=env, capture_output=True, text=True,
                          timeout=120)


def manifest_of(logs, node=NODE):
    return json.loads(logs.read(f"{JOB}/{node}/manifest.json"))


def bundle_files(logs, manifest) -> dict[str, bytes]:
    data = b"".join(logs.read(p["blob"], limit=2**40) for p in manifest["bundle"]["parts"])
    with zipfile.ZipFile(io.BytesIO(data)) as bundle:
        return {name: bundle.read(name) for name in bundle.namelist()}


def test_one_bundle_per_node_each_dump_on_its_own_then_the_manifest(containers, node_dir):
    logs, reports = containers
    root, outside, files = node_dir
    url, token = sas_url(logs, create=True)  # create only: no write, read, list or delete
    args = ["--logs", "job-1/*/wd/*.log", "--logs", str(outside), "--crash-dumps", "job-1/*/wd/core*"]
    proc = run_uploader(root, url, *args)
    assert proc.returncode == 0, proc.stderr
    assert token not in proc.stdout + proc.stderr and "sig=" not in proc.stderr

    manifest = manifest_of(logs)
    run = manifest["runId"]
    dump_blob = f"{JOB}/{NODE}/crashdumps/{run}/job-1/t2/wd/core.42.gz"
    assert {b.name for b in logs.list(f"{JOB}/{NODE}/")} == {
        f"{JOB}/{NODE}/bundles/{run}.zip", dump_blob, f"{JOB}/{NODE}/manifest.json"}
    logs_only = {rel: data for rel, data in files.items() if "core" not in rel}
    assert bundle_files(logs, manifest) == logs_only, "every log, byte for byte, under its path on the node"
    assert gzip.decompress(logs.read(dump_blob)) == files["job-1/t2/wd/core.42"]
    (dump,) = manifest["crashDumps"]
    assert (dump["path"], dump["size"], dump["sha256"]) == (
        "job-1/t2/wd/core.42", len(files["job-1/t2/wd/core.42"]), hashlib.sha256(files["job-1/t2/wd/core.42"]).hexdigest())
    assert manifest["bundle"]["entries"] == len(logs_only) and manifest["failed"] == []

    # The collector then finds the node complete, from one read of the bundle.
    result = on_manifest(logs, reports, f"{JOB}/{NODE}/manifest.json", datetime.now(UTC))
    assert (result["status"], result["files"], result["problems"]) == ("collected", len(logs_only), 0)


def test_a_second_run_never_overwrites_the_first(containers, node_dir):
    logs, _ = containers
    root, _, _ = node_dir
    url, _ = sas_url(logs, create=True)
    assert run_uploader(root, url).returncode == 0
    first = manifest_of(logs)
    proc = run_uploader(root, url)
    assert proc.returncode == 0 and '"event": "manifest.exists"' in proc.stderr
    assert manifest_of(logs) == first, "the first run's manifest stands"


def test_create_only_sas_cannot_list_read_or_overwrite(containers):
    logs, _ = containers
    url, _ = sas_url(logs, create=True)
    from azure.core.exceptions import HttpResponseError
    from azure.storage.blob import ContainerClient

    client = ContainerClient.from_container_url(url)
    client.upload_blob("probe", b"x")
    with pytest.raises(HttpResponseError):
        list(client.list_blobs())
    with pytest.raises(HttpResponseError):
        client.download_blob("probe").readall()
    with pytest.raises(HttpResponseError):
        client.delete_blob("probe")
    container = log_uploader.Container(url)
    with pytest.raises(log_uploader.UploadError) as refused:
        container.create("probe", b"y", "text/plain")
    # 403 without write permission (Azurite and Azure check it first), 409 under If-None-Match with it.
    assert refused.value.error_code in ("AuthorizationPermissionMismatch", None)
    assert logs.read("probe") == b"x"


def test_failures_are_reported_and_exit_code_is_zero(containers, node_dir):
    logs, _ = containers
    root, _, _ = node_dir
    url, token = sas_url(logs, read=True)  # cannot write: every upload is refused
    proc = run_uploader(root, url, "--crash-dumps", "job-1/*/wd/core*")
    assert proc.returncode == 0
    assert token not in proc.stderr and "sig=" not in proc.stderr
    events = [json.loads(line) for line in proc.stderr.splitlines()]
    failures = [e for e in events if e["event"] == "upload.failed"]
    assert [e["path"] for e in failures] == ["bundle", "job-1/t2/wd/core.42"] and all("403" in e["error"] for e in failures)
    assert events[-1]["event"] == "upload.done" and events[-1]["manifest"] is False


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
        status, error_code = status if isinstance(status, tuple) else (status, None)
        self.seen.append((status, self.path))
        if status == "drop":
            self.connection.close()
            return
        self.send_response(status)
        if error_code:
            self.send_header("x-ms-error-code", error_code)
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
        container.create("j/n/manifest.json", b"data", "application/json")
        succeeded = True
    except log_uploader.UploadError as exc:
        succeeded = False
        assert "SECRET" not in str(exc)
    assert succeeded is ok and len(_Flaky.seen) == attempts
    assert len(delays) == attempts - 1 and delays == sorted(delays)  # exponential, jitter within a step


@pytest.mark.parametrize(("answer", "landed"), [
    ((409, "BlobAlreadyExists"), True),
    ((403, "AuthorizationPermissionMismatch"), True),  # what a create-only SAS or add/action answers
    ((403, "AuthenticationFailed"), False),
])
def test_a_retry_finding_its_own_earlier_upload_counts_it_as_landed(flaky_server, answer, landed):
    """The first attempt reached Storage but its answer was lost; the retry is told the name is taken."""
    _Flaky.script, _Flaky.seen = ["drop", answer], []
    container = log_uploader.Container(f"http://127.0.0.1:{flaky_server.server_port}/c?sig=S", sleep=lambda _s: None)
    if landed:
        container.create("j/n/bundles/x.zip", b"data", "application/zip")
    else:
        with pytest.raises(log_uploader.UploadError):
            container.create("j/n/bundles/x.zip", b"data", "application/zip")
    assert len(_Flaky.seen) == 2


def test_the_budget_bounds_every_request_and_retry(flaky_server):
    _Flaky.script, _Flaky.seen = [503, 503, 503], []
    container = log_uploader.Container(f"http://127.0.0.1:{flaky_server.server_port}/c?sig=S", sleep=lambda _s: None)
    container.deadline = time.monotonic() + 0.2  # shorter than the first backoff
    with pytest.raises(log_uploader.UploadError, match="time budget used up after 1 attempts"):
        container.create("j/n/manifest.json", b"{}", "application/json")
    container.deadline = time.monotonic() - 1
    with pytest.raises(log_uploader.UploadError, match="time budget used up"):
        container.create("j/n/manifest.json", b"{}", "application/json")
    assert len(_Flaky.seen) == 1, "nothing is sent once the budget is spent"


def test_blobs_over_the_single_upload_limit_go_up_in_parts(containers, node_dir):
    logs, reports = containers
    root, _, files = node_dir
    url, _ = sas_url(logs, create=True)
    part = 1024 * 1024
    proc = run_uploader(root, url, "--logs", "job-1/*/wd/*.log", "--crash-dumps", "job-1/*/wd/core*",
                        env={"ORCHESTRATOR_UPLOAD_PART_BYTES": str(part)})
    assert proc.returncode == 0, proc.stderr
    manifest = manifest_of(logs)
    parts = manifest["bundle"]["parts"]
    assert len(parts) == -(-manifest["bundle"]["size"] // part) > 1
    assert [p["blob"] for p in parts] == [f"{manifest['bundle']['blob']}.{i:03d}" for i in range(len(parts))]
    assert all(p["size"] == part for p in parts[:-1])
    assert bundle_files(logs, manifest)["job-1/t2/wd/big.log"] == files["job-1/t2/wd/big.log"]
    result = on_manifest(logs, reports, f"{JOB}/{NODE}/manifest.json", datetime.now(UTC))
    assert (result["status"], result["problems"]) == ("collected", 0)


@pytest.mark.parametrize(("env", "now", "expected"), [
    ({}, 1000.0, log_uploader.DEFAULT_BUDGET),
    ({"ORCHESTRATOR_RELEASE_MAX_SECONDS": "900", "ORCHESTRATOR_RELEASE_STARTED": "1000"}, 1000.0, 900 - 90),
    ({"ORCHESTRATOR_RELEASE_MAX_SECONDS": "900", "ORCHESTRATOR_RELEASE_STARTED": "1000"}, 1300.0, 900 - 90 - 300),
    ({"ORCHESTRATOR_RELEASE_MAX_SECONDS": "60", "ORCHESTRATOR_RELEASE_STARTED": "1000"}, 1000.0, 30),
    ({"ORCHESTRATOR_RELEASE_MAX_SECONDS": "3000", "ORCHESTRATOR_RELEASE_STARTED": "1000"}, 1000.0, 3000 - 120),
    ({"ORCHESTRATOR_RELEASE_MAX_SECONDS": "60", "ORCHESTRATOR_RELEASE_STARTED": "1000"}, 2000.0, 0),
    ({"ORCHESTRATOR_UPLOAD_BUDGET_SECONDS": "5", "ORCHESTRATOR_RELEASE_MAX_SECONDS": "900"}, 0.0, 5),
    ({"ORCHESTRATOR_RELEASE_MAX_SECONDS": "soon", "ORCHESTRATOR_RELEASE_STARTED": "1000"}, 0.0,
     log_uploader.DEFAULT_BUDGET),
])
def test_the_budget_follows_the_release_tasks_max_wall_clock(env, now, expected):
    """What is left of the release task's maxWallClock, less a margin (10%, 30 s to 120 s) for the manifest."""
    assert log_uploader.budget_from_env(env, now) == expected


def test_time_budget_still_writes_the_manifest(containers, node_dir):
    logs, _ = containers
    root, _, files = node_dir
    url, _ = sas_url(logs, create=True)
    proc = run_uploader(root, url, "--budget-seconds", "0", "--crash-dumps", "job-1/*/wd/core*")
    assert proc.returncode == 0
    manifest = manifest_of(logs)
    assert manifest["crashDumps"] == [] and manifest["bundle"] is None
    assert {f["path"] for f in manifest["failed"]} == {
        "bundle", "job-1/t2/wd/core.42", *(f"job-1/{t}/{s}.txt" for t in ("t1", "t2") for s in ("stdout", "stderr"))}
    assert manifest["failedCount"] == 6 and all("time budget" in f["error"] for f in manifest["failed"])


def test_a_node_killed_mid_upload_then_run_again_leaves_one_complete_node(containers, node_dir):
    """SIGKILL while the bundle's parts go up: no manifest. The release task run again uploads a new run
    that the collector takes; the killed run's parts are recorded as not accounted for, not collected."""
    logs, reports = containers
    root, _, _ = node_dir
    url, _ = sas_url(logs, create=True)
    small_parts = {"ORCHESTRATOR_UPLOAD_PART_BYTES": str(256 * 1024), "ORCHESTRATOR_COLLECT_LOGS": '["job-1/*/wd/*.log"]'}
    killed = subprocess.Popen([sys.executable, str(UPLOADER)], env=uploader_env(
        root, ORCHESTRATOR_LOGS_SAS_URL=url, **small_parts), stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: any("/bundles/" in b.name for b in logs.list(f"{JOB}/{NODE}/")), 60,
                   what="the first bundle part")
    finally:
        killed.kill()
        killed.wait(timeout=30)
    assert not logs.exists(f"{JOB}/{NODE}/manifest.json")
    left_behind = {b.name for b in logs.list(f"{JOB}/{NODE}/")}
    proc = run_uploader(root, url, env=small_parts)
    assert proc.returncode == 0, proc.stderr
    result = on_manifest(logs, reports, f"{JOB}/{NODE}/manifest.json", datetime.now(UTC))
    record = reports.read_json(f"{JOB}/nodes/{NODE}.json")
    assert (result["status"], result["problems"]) == ("collected", 0)
    assert record["files"] == 6 and record["unexpectedBlobCount"] == len(left_behind)


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
    env = uploader_env(root, ORCHESTRATOR_LOGS_CONTAINER_URL=container_url, ORCHESTRATOR_UPLOAD_CLIENT_ID=client_id,
                       ORCHESTRATOR_IMDS_URL=imds_url, SSL_CERT_FILE=str(cert))
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
    run = manifest["runId"]
    assert uploaded == {f"{JOB}/{NODE}/bundles/{run}.zip", f"{JOB}/{NODE}/crashdumps/{run}/job-1/t2/wd/core.42.gz",
                        f"{JOB}/{NODE}/manifest.json"}
    assert manifest["bundle"]["entries"] == len([f for f in files if "core" not in f and not f.startswith("abs")])
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
    assert events[-1] == {**events[-1], "event": "upload.done", "files": 0, "manifest": False}
    if imds_identity == POOL_CLIENT_ID:
        assert len(imds.requests) >= 2, "a refused token is replaced once before giving up"
