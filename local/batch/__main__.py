"""`python -m local.batch`: run the Batch emulator in the foreground."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from pathlib import Path

from local import logfmt
from local.batch.config import (
    DEFAULT_ACTIVE_JOB_QUOTA,
    DEFAULT_HOST,
    DEFAULT_PORT,
    EmulatorConfig,
    Faults,
    PoolSpec,
)
from local.batch.entra import TOKEN_PATH
from local.batch.server import ISSUER, serve


def parse_args(argv: list[str] | None = None) -> EmulatorConfig:
    parser = argparse.ArgumentParser(prog="python -m local.batch", description=__doc__)
    parser.add_argument("--host", default=DEFAULT_HOST, help="address to bind (default %(default)s)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="port (0 picks a free one)")
    parser.add_argument("--workspace", type=Path, default=Path(".workspace/batch"),
                        help="folder holding the simulated nodes' directories")
    parser.add_argument("--pool", action="append", default=[], metavar="ID:NODES[:SLOTS]",
                        help="create a pool at start, e.g. --pool pool-1:2:4 (repeatable)")
    parser.add_argument("--fault-rate", type=float, default=0.0, help="fraction of requests answered with a fault")
    parser.add_argument("--fault-status", default="503", help="comma list of fault statuses: 503,429,500")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="added latency per request")
    parser.add_argument("--fault-seed", type=int, default=None, help="seed for repeatable fault injection")
    parser.add_argument("--active-job-quota", type=int, default=DEFAULT_ACTIVE_JOB_QUOTA,
                        help="active jobs allowed before 409 ActiveJobAndScheduleQuotaReached")
    parser.add_argument("--missed-completion", action="store_true",
                        help="an onAllTasksComplete=terminatejob set after every task completed does not end the "
                             "job (what users report Batch sometimes does)")
    parser.add_argument("--tls", action="store_true",
                        help="serve https with a development certificate (its CA is printed as BATCH_CA) and issue "
                             "Entra ID tokens at IDENTITY_ENDPOINT for DefaultAzureCredential")
    parser.add_argument("--no-user-accounts", action="store_true",
                        help="run every task as the emulator's own user, even as root (by default, as root, tasks "
                             "run as the unprivileged accounts their userIdentity names)")
    parser.add_argument("--app-storage", default=None, metavar="CONNECTION_STRING",
                        help="Blob storage holding application packages (Azurite's connection string locally); add "
                             "one with `python -m local.batch add-package`")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    try:
        pools = [PoolSpec.parse(p) for p in args.pool]
        statuses = tuple(int(s) for s in args.fault_status.split(",") if s)
    except ValueError as exc:
        parser.error(str(exc))
    if not 0 <= args.fault_rate <= 1:
        parser.error("--fault-rate must be between 0 and 1")
    logfmt.setup(args.log_level)
    return EmulatorConfig(host=args.host, port=args.port, workspace=args.workspace, pools=pools,
                          faults=Faults(rate=args.fault_rate, statuses=statuses, latency_ms=args.latency_ms,
                                        seed=args.fault_seed),
                          active_job_quota=args.active_job_quota, missed_completion=args.missed_completion,
                          tls=args.tls, switch_users=False if args.no_user_accounts else None,
                          app_storage=args.app_storage)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["add-package"]:
        from local.batch.applications import main as add_package

        add_package(argv[1:])
        return
    config = parse_args(argv)

    def ready(url: str, app) -> None:
        line = f"BATCH_URL={url} BATCH_ACCOUNT={config.account_name} BATCH_KEY={config.account_key}"
        if config.tls:
            # What a client sets to trust the emulator and to sign in with DefaultAzureCredential.
            issuer = app[ISSUER]
            line += (f" BATCH_CA={(config.workspace / 'tls' / 'ca.pem').resolve()}"
                     f" IDENTITY_ENDPOINT={url}{TOKEN_PATH} IDENTITY_HEADER={issuer.header_secret}")
        print(line, flush=True)

    async def run() -> None:
        task = asyncio.create_task(serve(config, ready))
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await task

    try:
        asyncio.run(run())
    except OSError as exc:
        sys.exit(f"batch emulator: cannot listen on {config.host}:{config.port}: {exc.strerror}. "
                 "Is another emulator running? Pick another port with --port.")


if __name__ == "__main__":
    main()
