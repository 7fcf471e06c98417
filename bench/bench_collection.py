"""Collection at the size users run (issue 11), against the Batch emulator and Azurite in the same run.

1. A 10,000-task job (2 nodes x 4 slots, each task printing about 3 KB): seconds from its last task's end
   to its complete report, against the floor measured in the same run: the SDK uploading and then
   downloading the same bytes once. Targets: ratio <= 3 and under 60 s. Also the function invocations it
   costs (target: nodes + crash dumps + a few) and the storage requests of the collecting functions.
2. 100,000 tasks on 8 nodes: the report completes; its size (target <= 1 MiB) and the collector's peak
   RSS (target <= 200 MiB), measured in a child process that runs every collection of the job.
3. Submit to complete report for 200, 2,000 and 20,000 tasks: the curve, and seconds per 1,000 tasks at
   each size (close to constant when work is linear).

The functions are called as their triggers would call them (collect_node per manifest, collect_crash_dump
per dump, the watchdog's sweep), in this process; the dev host's own overhead is not in these figures.
Run: python -m bench.bench_collection [small] ("small" runs the first part only).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from azure.storage.blob import BlobServiceClient, ContainerClient

from bench.bench_collect import _peak_rss_mib
from local.azurite import ACCOUNT_KEY, Azurite
from local.batch.control import EmulatorProcess, Endpoint
from shared.adapters.batch import BatchAdapter
from shared.adapters.blobs import CLIENT_KWARGS
from shared.adapters.store import Store
from shared.flows import files
from shared.flows.collect import on_crash_dump, on_manifest
from shared.flows.submit import submit
from shared.flows.watchdog import Watchdog
from shared.pure import blob_layout as layout
from shared.pure.report import is_final
from tests.waiting import wait_until

TMPFS = Path("/dev/shm")
FLOOR_SAMPLE = 2_000
TARGET_RATIO, TARGET_SECONDS = 3.0, 60.0
TARGET_REPORT_BYTES, TARGET_RSS_MIB = 1024 * 1024, 200
# About 3 KB of stdout per task, as a real task's progress lines would be.
TASK_COMMAND = "/bin/bash -c 'for i in $(seq 1 60); do echo \"task {0} step $i: residual 0.000123 ok\"; done'"


class Counting:
    """Storage requests made through a client built with raw_request_hook=counter (azure-storage's hook)."""

    def __init__(self):
        self.requests = 0

    def __call__(self, _request) -> None:
        self.requests += 1


def _request(job_id: str, pool: str, tasks: int) -> bytes:
    return json.dumps({"jobId": job_id, "poolId": pool, "timeout": "PT2H", "taskFactory": {
        "type": "parametricSweep", "start": 1, "end": tasks, "idFormat": "t{0:06}", "commandLine": TASK_COMMAND},
        "collect": {"crashDumps": ["job-1/*/wd/core*"]}}).encode()


class Bench:
    def __init__(self, azurite: Azurite, endpoint: Endpoint, counter: Counting):
        self.conn = azurite.connection_string
        self.endpoint = endpoint
        service = BlobServiceClient.from_connection_string(self.conn, raw_request_hook=counter, **CLIENT_KWARGS)
        self.store = Store(service, account_key=ACCOUNT_KEY)
        self.store.ensure_containers()
        self.batch = BatchAdapter(endpoint.client())
        self.counter = counter
        self.invocations = {"collect_node": 0, "collect_crash_dump": 0, "collect_stray": 0}
        # The bench's own listing (standing in for Event Grid) must not count as the functions' requests.
        self.lister = ContainerClient.from_connection_string(self.conn, "job-logs")

    def run_job(self, job_id: str, pool: str, tasks: int) -> dict:
        started = time.perf_counter()
        result = submit(_request(job_id, pool, tasks), job_id, self.batch, self.store, datetime.now(UTC), concurrency=8)
        assert result.tasks == tasks, result
        wait_until(lambda: self.batch.task_counts(job_id).completed == tasks, 3600, 0.5, what=f"{tasks} tasks")
        tasks_done = time.perf_counter()
        requests_before = self.counter.requests
        seen: set[str] = set()
        dog = Watchdog(self.batch, self.store)
        marks: dict[str, float] = {}
        while True:
            for blob in self.lister.list_blobs(name_starts_with=f"{job_id}/"):
                if blob.name in seen:
                    continue
                seen.add(blob.name)
                parsed = layout.parse_log_blob(blob.name)
                now = datetime.now(UTC)
                if isinstance(parsed, layout.BadBlobName):
                    self.invocations["collect_stray"] += 1
                elif parsed.kind == layout.MANIFEST:
                    self.invocations["collect_node"] += 1
                    on_manifest(self.store.logs, self.store.reports, blob.name, now)
                elif parsed.kind == layout.CRASH_DUMP:
                    self.invocations["collect_crash_dump"] += 1
                    on_crash_dump(self.store.logs, self.store.reports, blob.name, now)
            job = self.batch.get_job(job_id)
            if job.state == "completed":
                marks.setdefault("batch_completed", time.perf_counter())
                dog.sweep(datetime.now(UTC))
            report = self.store.report(job_id)
            if report and (report.get("collection") or {}).get("collectedNodes", 0) and not report.get("outcome"):
                marks.setdefault("first_node_collected", time.perf_counter())
            if is_final(report):
                break
            time.sleep(0.2)
        finished = time.perf_counter()
        raw = self.store.reports.read(layout.report_name(job_id))
        return {"tasks": tasks, "submit_to_report_s": round(finished - started, 2),
                "tasks_done_to_report_s": round(finished - tasks_done, 2), "report_bytes": len(raw),
                **{f"{k}_after_s": round(v - tasks_done, 2) for k, v in marks.items()},
                "collector_storage_requests": self.counter.requests - requests_before,
                "files": report["totals"]["files"], "nodes": report["totals"]["nodes"], "blobs": len(seen)}

    def floor_per_file(self, sizes: list[int]) -> float:
        """The SDK uploading, then downloading, the same files once each (8 at a time): what moving the
        job's logs costs at the least when each file is its own blob, as before bundles."""
        from concurrent.futures import ThreadPoolExecutor

        container = ContainerClient.from_connection_string(self.conn, "job-reports")
        prefix = f"bench-floor-{uuid.uuid4().hex}"
        sample = sizes[:: max(1, len(sizes) // FLOOR_SAMPLE)]
        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(lambda item: container.upload_blob(f"{prefix}/{item[0]}", b"x" * item[1], overwrite=True),
                          enumerate(sample)))
            list(pool.map(lambda i: container.download_blob(f"{prefix}/{i}").readall(), range(len(sample))))
        # Measured on a sample (every file would take minutes on Azurite) and scaled: it is linear in files.
        return (time.perf_counter() - started) * len(sizes) / len(sample)

    def floor(self, nbytes: int) -> float:
        """The SDK uploading, then downloading, the same number of bytes once."""
        data = os.urandom(min(nbytes, 64 * 1024 * 1024))
        reps = max(1, nbytes // len(data))
        container = ContainerClient.from_connection_string(self.conn, "job-reports")
        name = f"bench-floor-{uuid.uuid4().hex}"
        started = time.perf_counter()
        for i in range(reps):
            container.upload_blob(f"{name}-{i}", data, overwrite=True, max_concurrency=4)
        for i in range(reps):
            container.download_blob(f"{name}-{i}", max_concurrency=4).readall()
        return time.perf_counter() - started


def _emulator(tmp: Path, pools: list[str]):
    node_disk = TMPFS if TMPFS.is_dir() else tmp
    workspace = Path(tempfile.mkdtemp(prefix="bench-collection-", dir=node_disk))
    return EmulatorProcess(workspace, pools, log_file=tmp / "batch.log", extra=["--active-job-quota", "1000"]), workspace


def ten_thousand(bench: Bench) -> dict:
    job = f"bench-10k-{uuid.uuid4().hex[:6]}"
    result = bench.run_job(job, "two", 10_000)
    sizes = [f.size for f in files.index(bench.store, job)]
    logged = sum(sizes)
    per_file = bench.floor_per_file(sizes)
    bulk = bench.floor(logged)
    took = result["tasks_done_to_report_s"]
    invocations = dict(bench.invocations)
    out = {**result, "log_bytes": logged, "log_files": len(sizes), "floor_per_file_s": round(per_file, 2),
           "ratio_per_file": round(took / per_file, 2), "floor_bulk_s": round(bulk, 2),
           "ratio_bulk": round(took / bulk, 2), "ratio_target": TARGET_RATIO, "seconds_target": TARGET_SECONDS,
           "invocations": invocations, "invocations_target": f"nodes ({result['nodes']}) + crash dumps (0) + a few",
           "ok": took / per_file <= TARGET_RATIO and took < TARGET_SECONDS}
    print(f"collection: 10,000 tasks, {len(sizes)} files, {logged / 2**20:.1f} MiB: tasks done -> complete report "
          f"{took}s (target < {TARGET_SECONDS:.0f} s); floor, the SDK uploading then downloading each file once: "
          f"{per_file:.2f}s -> ratio {took / per_file:.2f} (target <= {TARGET_RATIO}); the same bytes as one blob: "
          f"{bulk:.2f}s -> ratio {took / bulk:.1f}; invocations {invocations}; "
          f"{result['collector_storage_requests']} storage requests by the functions; {result['blobs']} blobs")
    return out


def hundred_thousand(bench: Bench) -> dict:
    """The job's collection runs in a child process so its peak RSS is its own."""
    job = f"bench-100k-{uuid.uuid4().hex[:6]}"
    started = time.perf_counter()
    result = submit(_request(job, "eight", 100_000), job, bench.batch, bench.store, datetime.now(UTC), concurrency=8)
    assert result.tasks == 100_000
    wait_until(lambda: bench.batch.get_job(job).state == "completed", 3600, 1.0,
               what="the 100,000-task job to complete")
    batch_done = time.perf_counter()
    code = "import sys, json; from bench.bench_collection import _collect_child; print(json.dumps(_collect_child(*sys.argv[1:])))"
    endpoint = bench.endpoint
    child = subprocess.run([sys.executable, "-c", code, bench.conn, job, endpoint.url, endpoint.account, endpoint.key],
                           check=True, capture_output=True, text=True, timeout=3600,
                           cwd=Path(__file__).resolve().parents[1])
    measured = json.loads(child.stdout.strip().splitlines()[-1])
    out = {"tasks": 100_000, "submit_to_batch_done_s": round(batch_done - started, 1), **measured,
           "report_bytes_target": TARGET_REPORT_BYTES, "peak_rss_target_mib": TARGET_RSS_MIB,
           "ok": measured["complete"] and measured["report_bytes"] <= TARGET_REPORT_BYTES
           and measured["peak_rss_mib"] <= TARGET_RSS_MIB}
    print(f"collection: 100,000 tasks on 8 nodes: report complete {measured['complete']}, "
          f"{measured['report_bytes']} bytes (target <= {TARGET_REPORT_BYTES}), collector peak RSS "
          f"{measured['peak_rss_mib']} MiB (target <= {TARGET_RSS_MIB}), collection {measured['seconds']}s")
    return out


def _collect_child(conn: str, job: str, batch_url: str, batch_account: str, batch_key: str) -> dict:
    store = Store(BlobServiceClient.from_connection_string(conn, **CLIENT_KWARGS), account_key=ACCOUNT_KEY)
    batch = BatchAdapter(Endpoint(batch_url, batch_account, batch_key).client())
    started = time.perf_counter()
    lister = ContainerClient.from_connection_string(conn, "job-logs")
    for blob in lister.list_blobs(name_starts_with=f"{job}/"):
        parsed = layout.parse_log_blob(blob.name)
        if isinstance(parsed, layout.LogBlob) and parsed.kind == layout.MANIFEST:
            on_manifest(store.logs, store.reports, blob.name, datetime.now(UTC))
    Watchdog(batch, store).sweep(datetime.now(UTC))
    report = store.report(job)
    peak = _peak_rss_mib()
    return {"complete": bool(report and report["collectionComplete"]), "seconds": round(time.perf_counter() - started, 1),
            "report_bytes": len(store.reports.read(layout.report_name(job))), "peak_rss_mib": round(peak, 1),
            "files": report["totals"]["files"] if report else 0}


def curve(bench: Bench) -> dict:
    points = []
    for tasks in (200, 2_000, 20_000):
        result = bench.run_job(f"bench-curve-{tasks}-{uuid.uuid4().hex[:6]}", "two", tasks)
        points.append({"tasks": tasks, "seconds": result["submit_to_report_s"],
                       "per_1000_tasks_s": round(result["submit_to_report_s"] / tasks * 1000, 2)})
    print("collection: submit -> complete report: " + ", ".join(
        f"{p['tasks']} tasks {p['seconds']}s ({p['per_1000_tasks_s']}s per 1,000)" for p in points))
    return {"curve": points}


def run(small: bool = False) -> dict:
    Path(".workspace").mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(dir=".workspace") as tmp, Azurite() as azurite:
        emulator, workspace = _emulator(Path(tmp), ["two:2:4", "eight:8:4"])
        endpoint = emulator.start()
        try:
            bench = Bench(azurite, endpoint, Counting())
            out = {"name": "collection", **ten_thousand(bench)}
            if not small:
                out["hundred_thousand"] = hundred_thousand(bench)
                out.update(curve(bench))
            return out
        finally:
            emulator.stop()
            shutil.rmtree(workspace, ignore_errors=True)


if __name__ == "__main__":
    result = run(small="small" in sys.argv[1:])
    print(json.dumps(result, indent=2))
    sys.exit(0 if result["ok"] else 1)
