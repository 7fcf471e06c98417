"""Structured logs for the local stand-ins: one `key=value` line per event on stderr."""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime

from shared.pure.redact import RedactingFilter

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}


class KeyValueFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        fields = {"time": stamp, "level": record.levelname.lower(), "logger": record.name,
                  "msg": record.getMessage()}
        fields.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        line = " ".join(f"{k}={_quote(v)}" for k, v in fields.items())
        if record.exc_info:
            line += " exc=" + _quote(self.formatException(record.exc_info))
        return line


def _quote(value: object) -> str:
    text = str(value)
    if text and not any(c in text for c in ' "=\n\t'):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def setup(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(KeyValueFormatter())
    # On the handler, so it covers every logger of the process: a function's exception, an SDK's line.
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    if level.upper() != "DEBUG":
        # The Azure SDKs log every AMQP and HTTP state change at INFO; the stand-ins' own lines are what matter.
        logging.getLogger("azure").setLevel(logging.WARNING)
