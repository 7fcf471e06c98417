"""Call a user function the way the Python worker does: async ones on the event loop, sync ones in a thread pool."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import os
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .loader import FunctionSpec
from .payloads import InvocationContext

log = logging.getLogger("local.host.function")


def _thread_count() -> int | None:
    # Same knob as the worker; unset means Python's default pool size.
    raw = os.environ.get("PYTHON_THREADPOOL_THREAD_COUNT", "")
    return int(raw) if raw.isdigit() and int(raw) > 0 else None


class Invoker:
    def __init__(self, app_dir: str) -> None:
        self.app_dir = app_dir
        self.executor = ThreadPoolExecutor(max_workers=_thread_count(), thread_name_prefix="function")

    async def invoke(self, spec: FunctionSpec, argument: Any, reason: str, **fields: Any) -> Any:
        invocation_id = str(uuid.uuid4())
        kwargs = {spec.trigger["name"]: argument}
        if spec.context_param:
            kwargs[spec.context_param] = InvocationContext(invocation_id, spec.name, self.app_dir)
        extra = {"function": spec.name, "invocation_id": invocation_id, **fields}
        log.info(f"Executing 'Functions.{spec.name}' ({reason})", extra=extra)
        started = time.monotonic()
        try:
            if spec.is_async:
                result = await spec.callable(**kwargs)
            else:
                # copy_context: logging and tracing context variables follow the call into the thread.
                call = functools.partial(contextvars.copy_context().run, spec.callable, **kwargs)
                result = await asyncio.get_running_loop().run_in_executor(self.executor, call)
        except Exception as exc:
            log.error(f"Executed 'Functions.{spec.name}' (Failed)", exc_info=exc,
                      extra={**extra, "outcome": "failed", "duration_ms": _ms(started)})
            raise
        log.info(f"Executed 'Functions.{spec.name}' (Succeeded)",
                 extra={**extra, "outcome": "succeeded", "duration_ms": _ms(started)})
        return result

    def close(self, wait: bool) -> None:
        # Threads running a sync function cannot be interrupted; past the deadline they are left to finish.
        self.executor.shutdown(wait=wait, cancel_futures=True)


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
