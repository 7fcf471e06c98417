"""Structured logs: one JSON object per line on stderr."""

from __future__ import annotations

import json
import sys
import time


def log(event: str, level: str = "info", **fields: object) -> None:
    record = {"ts": round(time.time(), 3), "level": level, "component": "servicebus", "event": event}
    record.update({k: v if isinstance(v, int | float | bool | type(None)) else str(v) for k, v in fields.items()})
    try:
        sys.stderr.write(json.dumps(record) + "\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass  # a closed stderr must not take the broker down
