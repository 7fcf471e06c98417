"""The REST surface: bad input, paging, filters, quotas, auth, faults and api-versions."""

from __future__ import annotations

import base64
import http.client
import json
import socket
import time
from email.utils import formatdate
from urllib.parse import urlsplit

import azure.batch.models as m
import pytest
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError

from local.batch import auth
from local.batch.control import Endpoint
from local.batch.versions import SUPPORTED_API_VERSIONS
from tests.batch.jobs import create_job, tasks, wait_tasks_done


def raw_request(endpoint, method: str, path: str, body: bytes | None = None, key: str | None = None):
    """A hand-signed request, for what the SDK would never send."""
    url = urlsplit(f"{endpoint.url}{path}")
    headers = {"ocp-date": formatdate(usegmt=True), "Content-Type": "application/json; odata=minimalmetadata"}
    if body is not None:
        headers["Content-Length"] = str(len(body))
    headers["Authorization"] = auth.authorization(endpoint.account, key or endpoint.key, method, url.path,
                                                  url.query, headers)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    conn.request(method, f"{url.path}?{url.query}", body=body, headers=headers)
    resp = conn.getresponse()
    payload = resp.read()
    conn.close()
    return resp.status, json.loads(payload) if payload else None


def detail(body: dict, key: str) -> str | None:
    return next((v["value"] for v in body.get("values", []) if v["key"] == key), None)


@pytest.mark.parametrize(("body", "status", "code", "prop"), [
    (b"{not json", 400, "InvalidRequestBody", None),
    (json.dumps({"id": "x1"}).encode(), 400, "MissingRequiredProperty", "poolInfo"),
    (json.dumps({"poolInfo": {"poolId": "p"}}).encode(), 400, "MissingRequiredProperty", "id"),
    (json.dumps({"id": "bad id!", "poolInfo": {"poolId": "p"}}).encode(), 400, "InvalidPropertyValue", "id"),
    (json.dumps({"id": "x" * 65, "poolInfo": {"poolId": "p"}}).encode(), 400, "InvalidPropertyValue", "id"),
    (json.dumps({"id": "rel-no-prep", "poolInfo": {"poolId": "p"},
                 "jobReleaseTask": {"commandLine": "x"}}).encode(), 400, "InvalidPropertyValue", "jobReleaseTask"),
    (json.dumps({"id": "long-release", "poolInfo": {"poolId": "p"}, "jobPreparationTask": {"commandLine": "x"},
                 "jobReleaseTask": {"commandLine": "x", "maxWallClockTime": "PT16M"}}).encode(),
     400, "InvalidPropertyValue", "jobReleaseTask.maxWallClockTime"),
    (json.dumps({"id": "manager", "poolInfo": {"poolId": "p"},
                 "jobManagerTask": {"id": "m", "commandLine": "x"}}).encode(), 400, "InvalidPropertyValue",
     "jobManagerTask"),
])
def test_bad_job_bodies_are_refused_naming_the_property(batch_emulator, body, status, code, prop):
    got_status, got = raw_request(batch_emulator, "POST", "/jobs?api-version=2025-06-01", body)
    assert (got_status, got["code"]) == (status, code)
    assert detail(got, "PropertyName") == prop
    assert got["message"]["lang"] == "en-US"


def test_unknown_fields_are_ignored(batch_emulator, batch_client, job_id):
    body = json.dumps({"id": job_id, "poolInfo": {"poolId": "pool-2x4"}, "fancyNewField": {"x": 1}}).encode()
    status, _ = raw_request(batch_emulator, "POST", "/jobs?api-version=2025-06-01", body)
    assert status == 201
    assert batch_client.get_job(job_id).state == "active"


def test_client_disconnecting_mid_request_breaks_nothing(batch_emulator, batch_client, job_id):
    url = urlsplit(batch_emulator.url)
    with socket.create_connection((url.hostname, url.port), timeout=5) as sock:
        sock.sendall(b"POST /jobs?api-version=2025-06-01 HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n{\"id\":")
    create_job(batch_client, job_id, "pool-2x4")
    assert batch_client.get_job(job_id).id == job_id


def test_wrong_key_is_refused_with_authentication_failed(batch_emulator):
    wrong = base64.b64encode(b"not the development key").decode()
    status, body = raw_request(batch_emulator, "GET", "/jobs?api-version=2025-06-01", key=wrong)
    assert (status, body["code"]) == (403, "AuthenticationFailed")
    client = Endpoint(batch_emulator.url, batch_emulator.account, wrong).client()
    with pytest.raises(HttpResponseError) as err:
        list(client.list_pools())
    assert err.value.status_code == 403 and err.value.error.code == "AuthenticationFailed"


def test_task_id_clashing_with_prep_and_duplicates_get_per_task_results(batch_client, job_id):
    create_job(batch_client, job_id, "pool-1x1", prep="/bin/true", release="/bin/true")
    with pytest.raises(ResourceExistsError) as clash:
        batch_client.create_task(job_id, m.BatchTaskCreateOptions(id="jobpreparation", command_line="/bin/true"))
    assert clash.value.error.code == "TaskIdSameAsJobPreparationTask"
    batch_client.create_task(job_id, m.BatchTaskCreateOptions(id="a", command_line="/bin/true"))
    result = batch_client.create_task_collection(job_id, m.BatchTaskGroup(task_values=[
        m.BatchTaskCreateOptions(id="a", command_line="/bin/true"),
        m.BatchTaskCreateOptions(id="b", command_line="/bin/true"),
    ]))
    by_id = {r.task_id: r for r in result.result_values}
    assert by_id["a"].status == "clienterror" and by_id["a"].error.code == "TaskExists"
    assert by_id["b"].status == "success"


def test_paging_keeps_filter_and_select_across_next_links(batch_client, job_id):
    create_job(batch_client, job_id, "pool-empty")
    batch_client.create_tasks(job_id, tasks(*[(f"{'a' if i % 2 else 'b'}{i:03d}", "/bin/true") for i in range(60)]))
    listed = list(batch_client.list_tasks(job_id, max_results=7, filter="startswith(id,'a')", select=["id"]))
    assert sorted(t.id for t in listed) == sorted(f"a{i:03d}" for i in range(1, 60, 2))
    assert all(t.state is None for t in listed), "$select limits the properties on every page"


def test_job_filters(batch_client, job_id):
    create_job(batch_client, job_id, "pool-2x4", all_tasks_complete_mode="terminatejob")
    create_job(batch_client, f"{job_id}-b", "pool-2x4")
    done = [j.id for j in batch_client.list_jobs(filter=f"state eq 'completed' and startswith(id,'{job_id}')")]
    live = [j.id for j in batch_client.list_jobs(filter=f"state eq 'active' and startswith(id,'{job_id}')")]
    assert (done, live) == ([job_id], [f"{job_id}-b"]) or (done, live) == ([], [job_id, f"{job_id}-b"])
    with pytest.raises(HttpResponseError) as bad:
        list(batch_client.list_jobs(filter="nosuchprop eq 1"))
    assert bad.value.status_code == 400 and bad.value.error.code == "InvalidQueryParameterValue"


def test_ten_thousand_tasks_in_one_job(batch_client, job_id):
    create_job(batch_client, job_id, "pool-empty")
    result = batch_client.create_tasks(job_id, tasks(*[(f"t{i:05d}", "/bin/true") for i in range(10_000)]),
                                       max_concurrency=8)
    assert all(r.status == "success" for r in result.result_values)
    counts = batch_client.get_job_task_counts(job_id).task_counts
    assert counts.active == 10_000
    assert sum(1 for _ in batch_client.list_tasks(job_id, select=["id"])) == 10_000


def test_active_job_quota(batch_emulator, batch_client, job_id):
    live = sum(1 for _ in batch_client.list_jobs(filter="state eq 'active'"))
    batch_emulator.set_faults(activeJobQuota=live + 1)
    try:
        create_job(batch_client, job_id, "pool-2x4")
        with pytest.raises(ResourceExistsError) as full:
            create_job(batch_client, f"{job_id}-over", "pool-2x4")
        assert full.value.error.code == "ActiveJobAndScheduleQuotaReached"
    finally:
        batch_emulator.set_faults(activeJobQuota=300)


@pytest.mark.parametrize("statuses", [[503], [429], [503, 429]])
def test_sdk_retries_ride_through_injected_faults(batch_emulator, job_id, statuses):
    # azure-core caps retries on error statuses separately (retry_status, default 3), so raise both caps.
    client = batch_emulator.client(retry_backoff_factor=0.01, retry_total=20, retry_status=20)
    batch_emulator.set_faults(rate=0.3, statuses=statuses, retryAfter=0)
    try:
        create_job(client, job_id, "pool-2x4")
        client.create_tasks(job_id, tasks(*[(f"t{i}", "/bin/true") for i in range(150)]))
        wait_tasks_done(client, job_id, 150)
        assert sum(1 for _ in client.list_tasks(job_id, max_results=20)) == 150
    finally:
        batch_emulator.set_faults(rate=0.0)
    client.close()


def test_latency_is_added_per_request(batch_emulator, batch_client):
    batch_emulator.set_faults(latencyMs=150)
    try:
        start = time.monotonic()
        batch_client.get_pool("pool-2x4")
        slow = time.monotonic() - start
    finally:
        batch_emulator.set_faults(latencyMs=0)
    assert slow >= 0.15


def test_older_api_version_is_accepted_and_unknown_refused(batch_emulator):
    status, _ = raw_request(batch_emulator, "GET", "/pools?api-version=2024-07-01.20.0")
    assert status == 200
    status, body = raw_request(batch_emulator, "GET", "/pools?api-version=1999-01-01")
    assert (status, detail(body, "QueryParameterName")) == (400, "api-version")


def test_pool_lifecycle(batch_client):
    pool = m.BatchPoolCreateOptions(id="temp-pool", vm_size="standard_d2s_v3", target_dedicated_nodes=3,
                                    task_slots_per_node=2)
    batch_client.create_pool(pool)
    assert batch_client.pool_exists("temp-pool")
    got = batch_client.get_pool("temp-pool")
    assert (got.current_dedicated_nodes, got.task_slots_per_node, got.allocation_state) == (3, 2, "steady")
    assert len(list(batch_client.list_nodes("temp-pool"))) == 3
    with pytest.raises(ResourceExistsError):
        batch_client.create_pool(pool)
    batch_client.begin_delete_pool("temp-pool", polling_interval=0.1).result()
    # pool_exists() itself raises on 404 in azure-batch 15.1 (its exception policy runs first), so ask get_pool.
    with pytest.raises(ResourceNotFoundError):
        batch_client.get_pool("temp-pool")


def test_ids_are_case_insensitive_and_case_preserving(batch_client, job_id):
    """https://learn.microsoft.com/rest/api/batchservice/job/add: ids are case-preserving and case-insensitive."""
    mixed = f"Case-{job_id}"[:64]
    create_job(batch_client, mixed, "POOL-2x4")
    got = batch_client.get_job(mixed.lower())
    assert (got.id, got.pool_info.pool_id) == (mixed, "POOL-2x4")
    with pytest.raises(ResourceExistsError) as clash:
        create_job(batch_client, mixed.upper(), "pool-2x4")
    assert clash.value.error.code == "JobExists"
    assert batch_client.get_pool("Pool-2X4").id == "pool-2x4"
    batch_client.create_task(mixed.upper(), m.BatchTaskCreateOptions(id="TaskA", command_line="/bin/true"))
    result = batch_client.create_task_collection(mixed, m.BatchTaskGroup(task_values=[
        m.BatchTaskCreateOptions(id="TASKA", command_line="/bin/true"),
        m.BatchTaskCreateOptions(id="taskB", command_line="/bin/true")]))
    assert [(r.task_id, r.status) for r in result.result_values] == [("TASKA", "clienterror"), ("taskB", "success")]
    assert result.result_values[0].error.code == "TaskExists"
    wait_tasks_done(batch_client, mixed, 2)
    assert batch_client.get_task(mixed.lower(), "taska").id == "TaskA"
    assert b"".join(batch_client.download_task_file(mixed, "TASKB", "stdout.txt")) == b""
    batch_client.begin_delete_job(mixed.upper(), polling_interval=0.1).result()
    with pytest.raises(ResourceNotFoundError):
        batch_client.get_job(mixed)


def test_api_versions_before_the_renames_get_their_own_names(batch_emulator, batch_client, job_id):
    """2019-08-01.10.0 (azure-batch 8, Azure/azure-batch-samples): maxTasksPerNode and flat task counts; before
    2018-12-01.8.0 resource files name their URL blobSource."""
    old = "api-version=2019-08-01.10.0"
    older = "api-version=2018-08-01.7.0"
    pool_id = f"old-{job_id}"[:64]
    status, _ = raw_request(batch_emulator, "POST", f"/pools?{old}", json.dumps(
        {"id": pool_id, "vmSize": "standard_d2s_v3", "targetDedicatedNodes": 1, "maxTasksPerNode": 2}).encode())
    assert status == 201
    status, pool = raw_request(batch_emulator, "GET", f"/pools/{pool_id}?{old}")
    assert (status, pool["maxTasksPerNode"], "taskSlotsPerNode" in pool) == (200, 2, False)
    assert batch_client.get_pool(pool_id).task_slots_per_node == 2, "the current version sees the same pool"
    raw_request(batch_emulator, "POST", f"/jobs?{old}", json.dumps(
        {"id": job_id, "poolInfo": {"poolId": pool_id}}).encode())
    source = f"{batch_emulator.url}/_emulator/health"
    status, _ = raw_request(batch_emulator, "POST", f"/jobs/{job_id}/tasks?{older}", json.dumps(
        {"id": "t", "commandLine": "cat health.json",
         "resourceFiles": [{"blobSource": source, "filePath": "health.json"}]}).encode())
    assert status == 201
    wait_tasks_done(batch_client, job_id, 1)
    status, task = raw_request(batch_emulator, "GET", f"/jobs/{job_id}/tasks/t?{older}")
    assert task["resourceFiles"] == [{"blobSource": source, "filePath": "health.json"}]
    status, task = raw_request(batch_emulator, "GET", f"/jobs/{job_id}/tasks/t?{old}")
    assert task["resourceFiles"] == [{"httpUrl": source, "filePath": "health.json"}]
    assert task["executionInfo"]["result"] == "success"
    assert json.loads(b"".join(batch_client.download_task_file(job_id, "t", "stdout.txt")))["status"] == "ok"
    status, counts = raw_request(batch_emulator, "GET", f"/jobs/{job_id}/taskcounts?{old}")
    assert counts == {"active": 0, "running": 0, "completed": 1, "succeeded": 1, "failed": 0,
                      "validationStatus": "validated"}
    status, counts = raw_request(batch_emulator, "GET", f"/jobs/{job_id}/taskcounts?api-version=2020-09-01.12.0")
    assert counts["taskCounts"]["succeeded"] == 1 and counts["taskSlotCounts"]["succeeded"] == 1
    batch_client.begin_delete_job(job_id, polling_interval=0.1).result()
    batch_client.begin_delete_pool(pool_id, polling_interval=0.1).result()


@pytest.mark.parametrize("version", sorted(SUPPORTED_API_VERSIONS))
def test_every_api_version_since_2017_is_served(batch_emulator, version):
    status, body = raw_request(batch_emulator, "GET", f"/pools/pool-2x4?api-version={version}")
    assert (status, body["id"]) == (200, "pool-2x4")
