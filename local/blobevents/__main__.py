"""`python -m local.blobevents --upstream http://127.0.0.1:10000 [--port 0]`: the blob events proxy.

Prints one line on stdout once it listens, `BLOB_EVENTS_URL=http://127.0.0.1:PORT`; logs go to stderr as
key=value lines. SIGINT/SIGTERM stop it (pending deliveries are dropped).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys

from local import logfmt

from .control import READY_PREFIX
from .delivery import Backoff
from .proxy import BlobEventsProxy

log = logging.getLogger("local.blobevents")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m local.blobevents", description=__doc__.split("\n")[0])
    parser.add_argument("--upstream", required=True, help="Azurite's blob endpoint, e.g. http://127.0.0.1:10000")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any free port)")
    parser.add_argument("--retry-initial", type=float, default=Backoff.initial,
                        help="seconds before the first redelivery; doubles each time")
    parser.add_argument("--retry-max", type=float, default=Backoff.maximum, help="longest wait between attempts")
    parser.add_argument("--log-level", default=os.environ.get("LOG_LEVEL", "INFO"))
    return parser.parse_args(argv)


async def serve(args: argparse.Namespace) -> int:
    proxy = BlobEventsProxy(args.upstream, port=args.port,
                            backoff=Backoff(initial=args.retry_initial, maximum=args.retry_max))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await proxy.astart()
    except OSError as exc:
        print(f"error: cannot listen on 127.0.0.1:{args.port} ({exc.strerror})", file=sys.stderr, flush=True)
        return 2
    print(f"{READY_PREFIX}{proxy.url}", flush=True)
    await stop.wait()
    await proxy.astop()
    log.info("blob events proxy stopped")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logfmt.setup(args.log_level)
    return asyncio.run(serve(args))


if __name__ == "__main__":
    sys.exit(main())
