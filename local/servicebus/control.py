"""`python -m local.servicebus` as a child process, for the local stack, tests and benchmarks."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from local.child import ReadyProcess


class ServiceBusProcess(ReadyProcess):
    """The emulator with `queues` written to `{workdir}/servicebus.json`; SQLite in data_dir, or in memory;
    AMQP over TLS on tls_port when given (a fixed one: the ready line names only the plain port).

    restart() keeps the port (give a fixed one, not 0, to reconnect to the same address) and the data.
    """

    def __init__(self, workdir: Path, queues: list[dict], port: int = 0, data_dir: Path | None = None,
                 log_path: Path | None = None, tls_port: int | None = None, topics: list[dict] | None = None) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        config = workdir / "servicebus.json"
        config.write_text(json.dumps({"queues": queues, "topics": topics or []}))
        args = [sys.executable, "-m", "local.servicebus", "--port", str(port), "--config", str(config)]
        args += ["--data-dir", str(data_dir)] if data_dir else ["--in-memory"]
        # The development CA and issuer key: made once per workdir (data_dir's own when there is one).
        self.tls_dir = (data_dir or workdir) / "tls"
        args += ["--tls-dir", str(self.tls_dir)]
        if tls_port is not None:
            args += ["--tls-port", str(tls_port)]
        self.tls_port = tls_port
        super().__init__("Service Bus emulator", args, "SERVICEBUS_CONNECTION=",
                         log_path or workdir / "servicebus.log")
        self.port = port
        self.connection_string = ""

    @property
    def ca_file(self) -> Path:
        return self.tls_dir / "ca.pem"

    def start(self, timeout: float = 20) -> ServiceBusProcess:
        self.connection_string = super().start(timeout)
        return self

    def restart(self, kill: bool = False) -> ServiceBusProcess:
        self.stop(kill=kill)
        return self.start()
