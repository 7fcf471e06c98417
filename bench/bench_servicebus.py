"""Service Bus emulator benchmark: 10,000 messages sent in batches, received peek-lock and completed
by 4 concurrent receivers. Prints end-to-end messages/s and delivery latency percentiles.

Run: .venv/bin/python -m bench.bench_servicebus [--runs N] [--in-memory]
(target: >= 1,000 messages/s end to end with the default SQLite store; the in-memory figure is
printed alongside for comparison). The clock runs from the first send until the last message is
completed; the sender's client close is not in it (the async SDK's close waits out its keep-alive
task's one-second sleep, which says nothing about the broker).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import queue
import sys
import tempfile
import threading
import time
from pathlib import Path

from azure.servicebus import ServiceBusMessage
from azure.servicebus.aio import ServiceBusClient

from local.servicebus.control import ServiceBusProcess

QUEUE = "bench"
TOTAL = 10_000
BATCH = 100
RECEIVERS = 4
TARGET_PER_S = 1_000


def _emulator(work: str, in_memory: bool) -> ServiceBusProcess:
    return ServiceBusProcess(Path(work), [{"name": QUEUE}], data_dir=None if in_memory else Path(work) / "data")


def _percentile(sorted_values: list[float], p: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(p / 100 * (len(sorted_values) - 1))))
    return sorted_values[index]


async def _send(client: ServiceBusClient) -> None:
    async with client.get_queue_sender(QUEUE) as sender:
        for start in range(0, TOTAL, BATCH):
            batch = await sender.create_message_batch()
            sent_ns = time.time_ns()
            for i in range(start, min(start + BATCH, TOTAL)):
                batch.add_message(ServiceBusMessage(f"m{i}", application_properties={"sent_ns": str(sent_ns)}))
            await sender.send_messages(batch)


def _receiver_process(connection: str, ready, completed, results) -> None:
    """One receiver per process: a single Python process cannot drive four SDK receivers at 1,000/s."""
    from azure.servicebus import ServiceBusClient as SyncClient

    latencies: list[float] = []
    bodies: list[str] = []
    with SyncClient.from_connection_string(connection) as client, \
            client.get_queue_receiver(QUEUE, prefetch_count=50) as receiver:
        receiver.peek_messages(max_message_count=1)  # forces the link open before the clock starts
        with ready.get_lock():
            ready.value += 1
        while completed.value < TOTAL:
            messages = receiver.receive_messages(max_message_count=50, max_wait_time=1)
            now = time.time_ns()
            for message in messages:
                latencies.append((now - int(message.application_properties[b"sent_ns"])) / 1e6)
                receiver.complete_message(message)
                bodies.append(str(message))
            with completed.get_lock():
                completed.value += len(messages)
    results.put((latencies, bodies))


async def _send_all(connection: str, sent: list[float]) -> None:
    async with ServiceBusClient.from_connection_string(connection) as client:
        await _send(client)
        sent.append(time.perf_counter())  # every batch acknowledged; closing the client is not sending


def _measure(connection: str) -> dict:
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Value("q", 0)
    completed = ctx.Value("q", 0)
    results = ctx.Queue()
    receivers = [
        ctx.Process(target=_receiver_process, args=(connection, ready, completed, results)) for _ in range(RECEIVERS)
    ]
    for proc in receivers:
        proc.start()
    # Process start-up and SDK imports are not the broker's throughput: start the clock once all listen.
    startup_deadline = time.monotonic() + 60
    while ready.value < RECEIVERS and time.monotonic() < startup_deadline:
        time.sleep(0.01)
    sent: list[float] = []
    errors: list[BaseException] = []

    def send() -> None:
        try:
            asyncio.run(_send_all(connection, sent))
        except BaseException as exc:  # noqa: BLE001 - reported below, after the receivers are stopped
            errors.append(exc)

    sender = threading.Thread(target=send, name="bench-sender")
    started = time.perf_counter()
    sender.start()
    deadline = time.monotonic() + 300
    while completed.value < TOTAL and time.monotonic() < deadline and any(p.is_alive() for p in receivers):
        if errors:
            break
        time.sleep(0.002)  # pacing the progress check only; the counter decides
    finished = time.perf_counter()
    sender.join(60)
    if errors:
        for proc in receivers:
            proc.kill()
        raise RuntimeError(f"sending failed: {errors[0]!r}")
    sent_at = sent[0] if sent else finished
    latencies: list[float] = []
    seen: set[str] = set()
    for _ in receivers:
        try:
            lat, bodies = results.get(timeout=30)
        except queue.Empty:
            break
        latencies += lat
        seen.update(bodies)
    for proc in receivers:
        proc.join(10)
        if proc.is_alive():
            proc.kill()
    latencies.sort()
    elapsed = finished - started
    return {
        "messages": len(seen),
        "seconds": round(elapsed, 2),
        "send_seconds": round(sent_at - started, 2),
        "messages_per_s": round(len(seen) / elapsed, 1),
        "latency_p50_ms": round(_percentile(latencies, 50), 1),
        "latency_p99_ms": round(_percentile(latencies, 99), 1),
        "deliveries": len(latencies),
    }


def _cpu_seconds(pid: int) -> float | None:
    """User+system CPU the emulator used: tells whether the broker or the clients are the bottleneck."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return round((int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"), 2)
    except (OSError, ValueError, IndexError):
        return None


def measure(in_memory: bool = False) -> dict:
    """Start an emulator (SQLite by default), run the workload, stop it, return the figures."""
    with tempfile.TemporaryDirectory() as tmp:
        emulator = _emulator(tmp, in_memory)
        connection = emulator.start(20).connection_string
        try:
            result = _measure(connection)
            result["broker_cpu_s"] = _cpu_seconds(emulator.proc.pid)
        finally:
            emulator.stop()
    result.update(store="memory" if in_memory else "sqlite", receivers=RECEIVERS, batch=BATCH,
                  target_messages_per_s=TARGET_PER_S, meets_target=result["messages_per_s"] >= TARGET_PER_S)
    return result


def run() -> dict:
    """`make bench`: the SQLite figures (the target applies to them), with the in-memory run alongside."""
    figures = measure(in_memory=False)
    figures["in_memory"] = measure(in_memory=True)
    return figures


def _print(figures: dict) -> None:
    print(f"servicebus emulator ({figures['store']} store): {figures['messages']} messages, "
          f"{RECEIVERS} peek-lock receivers, batches of {BATCH}")
    print(f"  end to end      {figures['messages_per_s']:>10,.1f} messages/s "
          f"(target {TARGET_PER_S:,}: {'met' if figures['meets_target'] else 'NOT met'})")
    print(f"  total time      {figures['seconds']:>10.2f} s (sending alone took {figures['send_seconds']:.2f} s)")
    print(f"  latency p50     {figures['latency_p50_ms']:>10.1f} ms (send to receive)")
    print(f"  latency p99     {figures['latency_p99_ms']:>10.1f} ms")
    print(f"  broker CPU      {figures['broker_cpu_s']!s:>10} s")
    print(f"  deliveries      {figures['deliveries']:>10} (more than messages means redeliveries)")


def _spread(runs: list[dict]) -> str:
    rates = sorted(r["messages_per_s"] for r in runs)
    return f"min {rates[0]:,.1f}  median {rates[len(rates) // 2]:,.1f}  max {rates[-1]:,.1f} messages/s"


if __name__ == "__main__":
    args = sys.argv[1:]
    count = int(args[args.index("--runs") + 1]) if "--runs" in args else 1
    stores = [True] if "--in-memory" in args else [False, True]
    for in_memory in stores:
        runs = []
        for _ in range(count):
            runs.append(measure(in_memory=in_memory))
            _print(runs[-1])
        if count > 1:
            print(f"  {runs[0]['store']} store over {count} runs: {_spread(runs)}")
