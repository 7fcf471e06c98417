"""Orchestrator benchmarks (issue 4), against the Batch emulator and Azurite in the same run.

1. Submit a 10,000-task request: time and Batch calls, against the SDK's create_tasks(max_concurrency=8)
   adding the same tasks. Target: ratio <= 1.1, and 100 add-collection calls plus a handful.
2. A watchdog sweep over 2,000 managed active jobs with 20 ms added latency per emulator request:
   Batch calls per sweep and time. Target: 3 list calls plus the bounded checks, under 2 s.
3. The same over 10,000 managed jobs, young (the preparation watch) and old (the completion backstop):
   target at most 11 list calls plus a bounded number of checks (100 task-count reads a sweep), under 3 s.
"""

from __future__ import annotations

import json
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import azure.batch.models as m
from azure.storage.blob import BlobServiceClient

from local.azurite import ACCOUNT_KEY, Azurite
from local.batch.control import EmulatorProcess
from shared.adapters.batch import BatchAdapter
from shared.adapters.store import Store
from shared.flows.submit import submit
from shared.flows.watchdog import Watchdog
from shared.pure import metadata
from shared.pure.planning import Links, plan
from shared.pure.request import parse_request, request_hash

TASKS = 10_000
JOBS = 2_000
MANY_JOBS = 10_000


def _request(job_id: str) -> bytes:
    return json.dumps({"jobId": job_id, "poolId": "parked", "timeout": "PT2H",
                       "taskFactory": {"type": "parametricSweep", "start": 1, "end": TASKS,
                                       "idFormat": "t{0:05}", "commandLine": "/bin/true"}}).encode()


def bench_submit(client, store: Store) -> dict:
    adapter = BatchAdapter(client)
    now = datetime.now(UTC)
    start = time.perf_counter()
    result = submit(_request("bench-submit"), "m1", adapter, store, now, concurrency=8)
    ours = time.perf_counter() - start
    assert result.tasks == TASKS, result

    # Baseline: the same task bodies through the SDK's own helper.
    request = parse_request(_request("bench-sdk"))
    job_plan = plan(request, "bench-sdk", request_hash(request), now, Links(node_files=(("log_uploader.py", "http://x/u"),), logs_container_url="http://x/l"))
    client.create_job(m.BatchJobCreateOptions(job_plan.job))
    bodies = [m.BatchTaskCreateOptions(t) for chunk in job_plan.task_chunks() for t in chunk]
    start = time.perf_counter()
    client.create_tasks("bench-sdk", bodies, max_concurrency=8)
    sdk = time.perf_counter() - start
    out = {"submit_seconds": round(ours, 3), "sdk_create_tasks_seconds": round(sdk, 3),
           "submit_ratio": round(ours / sdk, 2), "submit_ratio_target": 1.1,
           "submit_batch_calls": adapter.counter.calls, "submit_calls_target": "100 + a handful"}
    print(f"orchestrator: submit 10,000 tasks {ours:.2f}s vs SDK create_tasks {sdk:.2f}s -> ratio "
          f"{out['submit_ratio']} (target <= 1.1); {adapter.counter.calls} Batch calls (target 100 + a handful)")
    return out


def _managed_jobs(client, count: int, prefix: str, now: datetime) -> None:
    meta = metadata.to_items(metadata.encode(metadata.JobMetadata(deadline=now + timedelta(hours=2),
                                                                  request_hash="h" * 64, expected_tasks=1,
                                                                  submitted=True)))
    for i in range(count):
        client.create_job(m.BatchJobCreateOptions({"id": f"{prefix}{i:05}", "poolInfo": {"poolId": "parked"},
                                                   "metadata": meta}))


def _sweep(endpoint, client, store: Store, at: datetime) -> tuple:
    endpoint.set_faults(latencyMs=20)
    try:
        adapter = BatchAdapter(client)
        start = time.perf_counter()
        report = Watchdog(adapter, store).sweep(at)
        took = time.perf_counter() - start
    finally:
        endpoint.set_faults(latencyMs=0)
    lists = -(-report.jobs_seen // 1000) + (1 if report.jobs_seen % 1000 == 0 else 0)
    return report, took, lists


def bench_watchdog(endpoint, client, store: Store) -> dict:
    now = datetime.now(UTC)
    _managed_jobs(client, JOBS, "w", now)
    report, took, lists = _sweep(endpoint, client, store, now + timedelta(minutes=1))
    checks = report.batch_calls - lists
    out = {"sweep_jobs": report.managed, "sweep_batch_calls": report.batch_calls, "sweep_list_calls": lists,
           "sweep_checks": checks, "sweep_calls_target": "3 list calls + <= 200 checks",
           "sweep_seconds": round(took, 3), "sweep_seconds_target": 2.0}
    print(f"orchestrator: watchdog sweep over {report.managed} managed jobs with 20 ms latency: "
          f"{report.batch_calls} Batch calls ({lists} to list, {checks} task-count checks; target 3 + at most 200), "
          f"{took:.2f}s (target < 2 s)")
    return out


def bench_watchdog_backstop(endpoint, client, store: Store) -> dict:
    now = datetime.now(UTC)
    _managed_jobs(client, MANY_JOBS - JOBS, "b", now)
    out = {}
    for label, at in (("young", now + timedelta(minutes=1)), ("old", now + timedelta(hours=1))):
        report, took, lists = _sweep(endpoint, client, store, at)
        checks = report.batch_calls - lists
        out.update({f"backstop_{label}_jobs": report.managed, f"backstop_{label}_list_calls": lists,
                    f"backstop_{label}_checks": checks, f"backstop_{label}_seconds": round(took, 3)})
        print(f"orchestrator: watchdog sweep over {report.managed} {label} managed jobs with 20 ms latency: "
              f"{lists} list calls (target <= 11) + {checks} checks (bounded: at most 100 + 100), {took:.2f}s "
              "(target < 3 s)")
    out["backstop_targets"] = "<= 11 list calls + bounded checks, < 3 s"
    return out


def run() -> dict:
    Path(".workspace").mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(dir=".workspace") as tmp, Azurite() as azurite:
        emulator = EmulatorProcess(Path(tmp) / "ws", ["parked:0"], log_file=Path(tmp) / "log",
                                   extra=["--active-job-quota", "100000"])
        endpoint = emulator.start()
        client = endpoint.client()
        store = Store(BlobServiceClient.from_connection_string(azurite.connection_string),
                      account_key=ACCOUNT_KEY)
        store.ensure_containers()
        try:
            return {**bench_submit(client, store), **bench_watchdog(endpoint, client, store),
                    **bench_watchdog_backstop(endpoint, client, store)}
        finally:
            client.close()
            emulator.stop()


if __name__ == "__main__":
    run()
