"""Batch emulator benchmarks (issue 2).

1. 1,000 tasks of /bin/true on a pool of 2 nodes x 4 slots, from the first task added to the last
   completed, against `xargs -P 8` running the same 1,000 commands in the same run. Target: ratio <= 1.5.
2. 10,000 tasks added with the SDK's create_tasks(max_concurrency=8). Target: >= 2,000 tasks/s accepted.
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from pathlib import Path

import azure.batch.models as m

from local.batch.control import EmulatorProcess

TASKS = 1_000
ADD_TASKS = 10_000


def _xargs_seconds(count: int) -> float:
    # One /bin/true per input line, executed directly (no shell), 8 at a time.
    lines = "\n".join(str(i) for i in range(count)) + "\n"
    start = time.perf_counter()
    subprocess.run(["xargs", "-P", "8", "-n", "1", "/bin/true"], input=lines.encode(), check=True)
    return time.perf_counter() - start


def _wait_completed(client, job_id: str, count: int, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if client.get_job_task_counts(job_id).task_counts.completed >= count:
            return
        time.sleep(0.01)
    raise RuntimeError(f"{job_id}: {count} tasks did not complete within {timeout}s")


def run() -> dict:
    # Node directories live in the checkout's .workspace, where the emulator puts them by default.
    Path(".workspace").mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(dir=".workspace") as tmp:
        emulator = EmulatorProcess(Path(tmp) / "ws", ["bench:2:4", "parked:0"], log_file=Path(tmp) / "log")
        client = emulator.start().client()
        try:
            client.create_job(m.BatchJobCreateOptions(id="run1000", pool_info=m.BatchPoolInfo(pool_id="bench")))
            tasks = [m.BatchTaskCreateOptions(id=f"t{i:04d}", command_line="/bin/true") for i in range(TASKS)]
            start = time.perf_counter()
            client.create_tasks("run1000", tasks, max_concurrency=8)
            _wait_completed(client, "run1000", TASKS)
            emulator_s = time.perf_counter() - start
            counts = client.get_job_task_counts("run1000").task_counts
            if counts.succeeded != TASKS:
                raise RuntimeError(f"only {counts.succeeded} of {TASKS} tasks succeeded")
            xargs_s = _xargs_seconds(TASKS)

            client.create_job(m.BatchJobCreateOptions(id="add10k", pool_info=m.BatchPoolInfo(pool_id="parked")))
            many = [m.BatchTaskCreateOptions(id=f"t{i:05d}", command_line="/bin/true") for i in range(ADD_TASKS)]
            start = time.perf_counter()
            client.create_tasks("add10k", many, max_concurrency=8)
            add_s = time.perf_counter() - start
        finally:
            client.close()
            emulator.stop()
    result = {
        "run_1000_seconds": round(emulator_s, 3),
        "xargs_1000_seconds": round(xargs_s, 3),
        "run_ratio": round(emulator_s / xargs_s, 2),
        "run_ratio_target": 1.5,
        "add_10000_seconds": round(add_s, 3),
        "add_tasks_per_second": round(ADD_TASKS / add_s),
        "add_tasks_per_second_target": 2000,
    }
    print(f"batch: 1,000 x /bin/true on 2x4 slots: {emulator_s:.2f}s vs xargs -P 8 {xargs_s:.2f}s "
          f"-> ratio {result['run_ratio']} (target <= 1.5)")
    print(f"batch: 10,000 tasks added with create_tasks(max_concurrency=8) in {add_s:.2f}s "
          f"-> {result['add_tasks_per_second']} tasks/s (target >= 2,000)")
    return result


if __name__ == "__main__":
    run()
