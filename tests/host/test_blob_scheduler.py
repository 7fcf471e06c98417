"""BlobScheduler: at most maxDegreeOfParallelism at once, taken from per-job lanes in turn, so a burst for
one job cannot starve another's blob."""

from __future__ import annotations

import asyncio

from local.host.blob_trigger import BlobScheduler


async def test_a_burst_for_one_job_does_not_queue_another_job_behind_it():
    scheduler = BlobScheduler(parallelism=1)
    started: list[str] = []
    release = asyncio.Event()

    def job(name: str):
        async def run() -> None:
            started.append(name)
            await release.wait()
        return run

    for i in range(1, 6):
        scheduler.submit(("collect", "job-a"), job(f"a{i}"))
    scheduler.submit(("collect", "job-b"), job("b1"))
    await asyncio.sleep(0)  # let the first task start
    assert started == ["a1"] and scheduler.queued == 5
    release.set()
    while scheduler.running or scheduler.queued:
        await asyncio.sleep(0)
    assert started == ["a1", "a2", "b1", "a3", "a4", "a5"]


async def test_parallelism_is_shared_by_all_lanes_and_dropped_lanes_do_not_run():
    scheduler = BlobScheduler(parallelism=2)
    running = peak = 0
    finished: list[str] = []
    gate = asyncio.Event()

    def job(name: str):
        async def run() -> None:
            nonlocal running, peak
            running += 1
            peak = max(peak, running)
            await gate.wait()
            running -= 1
            finished.append(name)
        return run

    for lane in ("f1", "f2", "f3"):
        for i in range(3):
            scheduler.submit((lane, "job"), job(f"{lane}-{i}"))
    scheduler.drop(lambda lane: lane[0] != "f3")
    assert scheduler.running == 2 and scheduler.queued == 4
    await asyncio.sleep(0)  # both running jobs are inside, waiting at the gate
    assert peak == 2
    gate.set()
    while scheduler.running or scheduler.queued:
        await asyncio.sleep(0)
    assert peak == 2
    assert sorted(finished) == ["f1-0", "f1-1", "f1-2", "f2-0", "f2-1", "f2-2"]
