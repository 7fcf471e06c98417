"""Collect a 1 GiB crash dump: peak RSS and throughput against the SDK's plain download of the same blob.

Targets: peak RSS <= 150 MiB, throughput >= 0.8 x plain download. Each side runs in its own child
process so its peak RSS is its own. Run: python -m bench.bench_collect
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
import uuid

from local.azurite import Azurite

SIZE_BLOCKS = 256
BLOCK = 4 * 1024 * 1024
TARGET_RSS_MIB = 150
TARGET_RATIO = 0.8
ROUNDS = 2  # alternate the two sides; best of each, so a warm-up effect favours neither


def _peak_rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class _Sink:
    def write(self, data) -> int:
        return len(data)


def _child(mode: str, conn: str, logs_name: str, reports_name: str, blob: str) -> dict:
    from datetime import UTC, datetime

    from azure.storage.blob import ContainerClient

    from shared.adapters.blobs import BlobContainer
    from shared.flows.collect import on_crash_dump
    from shared.pure.blob_layout import crash_record_name

    started = time.perf_counter()
    if mode == "plain":
        logs = ContainerClient.from_connection_string(conn, logs_name)
        size = logs.download_blob(blob).readinto(_Sink())
    else:
        logs = BlobContainer.from_connection_string(conn, logs_name)
        reports = BlobContainer.from_connection_string(conn, reports_name)
        result = on_crash_dump(logs, reports, blob, datetime.now(UTC))
        size = reports.read_json(crash_record_name("bench-job", result["sha256"]))["size"]
    elapsed = time.perf_counter() - started
    return {"mode": mode, "seconds": elapsed, "bytes": size, "peak_rss_mib": _peak_rss_mib()}


def _run_child(mode: str, conn: str, logs_name: str, reports_name: str, blob: str) -> dict:
    code = (
        "import json,sys; from bench.bench_collect import _child; "
        "print(json.dumps(_child(*sys.argv[1:])))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, mode, conn, logs_name, reports_name, blob],
        check=True, capture_output=True, text=True, timeout=600,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def _upload(logs, name: str, blocks: int = SIZE_BLOCKS) -> str:
    from tests.unit.dumps import elf_core

    head = elf_core(exe="bench", signal=11)
    head += b"\xab" * (BLOCK - len(head))
    filler = bytes(range(256)) * (BLOCK // 256)
    blob = logs.get_blob_client(name)
    blob.stage_block("aGVhZA==", head)
    blob.stage_block("ZmlsbA==", filler)
    blob.commit_block_list(["aGVhZA=="] + ["ZmlsbA=="] * (blocks - 1))
    digest = hashlib.sha256(head)
    for _ in range(blocks - 1):
        digest.update(filler)
    return digest.hexdigest()


def run() -> dict:
    from azure.storage.blob import BlobServiceClient

    with Azurite() as azurite:
        service = BlobServiceClient.from_connection_string(azurite.connection_string)
        suffix = uuid.uuid4().hex[:8]
        logs = service.create_container(f"bench-logs-{suffix}")
        reports = service.create_container(f"bench-reports-{suffix}")
        name = "bench-job/_tasks/crashdumps/t1/core.bench"  # a failing task's own upload: the dump as is
        _upload(logs, name)
        args = (azurite.connection_string, logs.container_name, reports.container_name, name)
        plain, collect = [], []
        for _ in range(ROUNDS):
            plain.append(_run_child("plain", *args))
            collect.append(_run_child("collect", *args))
    best_plain = min(plain, key=lambda r: r["seconds"])
    best_collect = min(collect, key=lambda r: r["seconds"])
    size = best_collect["bytes"]
    plain_mibs = size / best_plain["seconds"] / 2**20
    collect_mibs = size / best_collect["seconds"] / 2**20
    peak = max(r["peak_rss_mib"] for r in collect)
    ratio = collect_mibs / plain_mibs
    return {
        "name": "collect_1gib_crash_dump",
        "bytes": size,
        "collect_seconds": round(best_collect["seconds"], 2),
        "plain_download_seconds": round(best_plain["seconds"], 2),
        "collect_mib_s": round(collect_mibs, 1),
        "plain_download_mib_s": round(plain_mibs, 1),
        "throughput_ratio": round(ratio, 3),
        "collect_peak_rss_mib": round(peak, 1),
        "plain_peak_rss_mib": round(max(r["peak_rss_mib"] for r in plain), 1),
        "target_peak_rss_mib": TARGET_RSS_MIB,
        "target_ratio": TARGET_RATIO,
        "ok": peak <= TARGET_RSS_MIB and ratio >= TARGET_RATIO,
    }


if __name__ == "__main__":
    result = run()
    for key, value in result.items():
        print(f"{key:>26}: {value}")
    sys.exit(0 if result["ok"] else 1)
