"""Download a crash dump through the HTTP API's flow (what `GET /api/jobs/{jobId}/dumps/{sha256}` streams):
peak RSS and throughput against the SDK's plain download of the same blob, at two sizes (memory must not
grow with the file; the buffered response it replaced held the whole file).

Targets: peak RSS <= 150 MiB at every size, throughput >= 0.5 x plain download (ours reads by ranged GETs
of at most 2 MiB to bound memory, the SDK's download by 4 MiB chunks). Each side runs in its own child
process so its peak RSS is its own. Run: python -m bench.bench_download
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from bench.bench_collect import _peak_rss_mib, _Sink, _upload
from local.azurite import Azurite

SIZES_MIB = (64, 256)
TARGET_RSS_MIB = 150
TARGET_RATIO = 0.5
JOB = "bench-job"


def _child(mode: str, conn: str, name: str, sha256: str) -> dict:
    from azure.storage.blob import BlobServiceClient

    from shared.adapters.store import LOGS_CONTAINER, Store
    from shared.flows import downloads

    service = BlobServiceClient.from_connection_string(conn)
    started = time.perf_counter()
    if mode == "plain":
        size = service.get_container_client(LOGS_CONTAINER).download_blob(name).readinto(_Sink())
    else:
        served = downloads.crash_dump(Store(service), JOB, sha256, None)
        size = sum(len(chunk) for chunk in served.chunks)
    return {"mode": mode, "seconds": time.perf_counter() - started, "bytes": size, "peak_rss_mib": _peak_rss_mib()}


def _run_child(*args: str) -> dict:
    code = "import json,sys; from bench.bench_download import _child; print(json.dumps(_child(*sys.argv[1:])))"
    out = subprocess.run([sys.executable, "-c", code, *args], check=True, capture_output=True, text=True,
                         timeout=600, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return json.loads(out.stdout.strip().splitlines()[-1])


def run() -> dict:
    from datetime import UTC, datetime

    from azure.storage.blob import BlobServiceClient

    from shared.adapters.blobs import BlobContainer
    from shared.adapters.store import LOGS_CONTAINER, REPORTS_CONTAINER
    from shared.flows.collect import on_crash_dump

    rows = []
    with Azurite() as azurite:
        service = BlobServiceClient.from_connection_string(azurite.connection_string)
        logs = service.create_container(LOGS_CONTAINER)
        service.create_container(REPORTS_CONTAINER)
        for mib in SIZES_MIB:
            name = f"{JOB}/_tasks/crashdumps/t{mib}/core.bench"
            _upload(logs, name, mib // 4)
            record = on_crash_dump(BlobContainer(logs), BlobContainer(service.get_container_client(REPORTS_CONTAINER)),
                                   name, datetime.now(UTC))
            plain = _run_child("plain", azurite.connection_string, name, record["sha256"])
            ours = _run_child("download", azurite.connection_string, name, record["sha256"])
            assert ours["bytes"] == plain["bytes"] == mib * 2**20, (ours, plain)
            rows.append({"mib": mib, "download_mib_s": round(mib / ours["seconds"], 1),
                         "plain_download_mib_s": round(mib / plain["seconds"], 1),
                         "throughput_ratio": round(plain["seconds"] / ours["seconds"], 3),
                         "download_peak_rss_mib": round(ours["peak_rss_mib"], 1),
                         "plain_peak_rss_mib": round(plain["peak_rss_mib"], 1)})
    worst = min(r["throughput_ratio"] for r in rows)
    peak = max(r["download_peak_rss_mib"] for r in rows)
    return {"name": "download_crash_dump", "sizes": rows, "worst_throughput_ratio": worst,
            "download_peak_rss_mib": peak, "target_peak_rss_mib": TARGET_RSS_MIB, "target_ratio": TARGET_RATIO,
            "ok": peak <= TARGET_RSS_MIB and worst >= TARGET_RATIO}


if __name__ == "__main__":
    result = run()
    for row in result.pop("sizes"):
        print("  ".join(f"{k}={v}" for k, v in row.items()))
    for key, value in result.items():
        print(f"{key:>24}: {value}")
    sys.exit(0 if result["ok"] else 1)
