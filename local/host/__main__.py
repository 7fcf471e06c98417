"""`python -m local.host [--app-dir DIR] [--port 7071]`: serve a Functions app until SIGINT/SIGTERM.

Prints exactly one line on stdout, `HOST_URL=http://127.0.0.1:PORT`, once every trigger listens;
logs go to stderr as key=value lines. Exit code 2 means a configuration problem (the log says which).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys

from local import logfmt

from .errors import HostConfigError
from .host import Host, HostOptions

log = logging.getLogger("local.host")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m local.host", description=__doc__.split("\n")[0])
    parser.add_argument("--app-dir", default=".", help="folder with function_app.py and host.json (default: .)")
    parser.add_argument("--port", type=int, default=None,
                        help="HTTP port (default: Host.LocalHttpPort in local.settings.json, else 7071; 0 = any)")
    parser.add_argument("--functions", nargs="+", default=None, help="serve only these functions")
    parser.add_argument("--host-id", default=None, help="id under azure-webjobs-hosts (default: machine name)")
    parser.add_argument("--blob-poll-interval", type=float, default=2.0,
                        help="seconds between blob scans (polling blob triggers; EventGrid ones scan once)")
    parser.add_argument("--shutdown-timeout", type=float, default=30.0,
                        help="seconds running invocations get to finish on stop")
    parser.add_argument("--log-level", default=os.environ.get("LOG_LEVEL", "INFO"))
    return parser.parse_args(argv)


async def serve(args: argparse.Namespace) -> int:
    options = HostOptions(host_id=args.host_id, functions=tuple(args.functions) if args.functions else None,
                          blob_poll_interval=args.blob_poll_interval, shutdown_timeout=args.shutdown_timeout)
    # The worker runs with the app's root as working directory; relative paths in the app resolve the same.
    os.chdir(args.app_dir)
    host = Host(".", port=args.port, options=options)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await host.astart()
    except HostConfigError as exc:
        log.error("host cannot start", extra={"reason": str(exc)})
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2
    print(f"HOST_URL={host.url}", flush=True)
    await stop.wait()
    log.info("stopping", extra={"timeout_s": args.shutdown_timeout})
    await host.astop()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logfmt.setup(args.log_level)
    return asyncio.run(serve(args))


if __name__ == "__main__":
    sys.exit(main())
