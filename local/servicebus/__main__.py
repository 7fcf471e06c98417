"""python -m local.servicebus: start the emulator and print SERVICEBUS_CONNECTION=... once listening."""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path

from . import DEFAULT_DATA_DIR, DEFAULT_HOST, DEFAULT_PORT, DEV_KEY, DEV_KEY_NAME, connection_string, devtls
from .broker import Broker
from .config import ConfigError, load_config, load_topics, merge, merge_topics
from .identity import DEV_IDENTITY_HEADER, IDENTITY_PATH, Issuer
from .log import log
from .queues import Namespace
from .server import Server
from .store import MemoryStore, SqliteStore


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m local.servicebus", description=__doc__)
    parser.add_argument("--host", default=DEFAULT_HOST, help="address to bind (default %(default)s)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="AMQP port (default %(default)s)")
    parser.add_argument("--queue", action="append", default=[], metavar="NAME",
                        help="declare a queue with default settings (repeatable)")
    parser.add_argument("--subscription", action="append", default=[], metavar="TOPIC/NAME",
                        help="declare a topic subscription (and its topic) with default settings; repeatable")
    parser.add_argument("--config", metavar="FILE", help="JSON file declaring queues, topics and their settings")
    parser.add_argument("--data-dir", default=DEFAULT_DATA_DIR, help="SQLite folder (default %(default)s)")
    parser.add_argument("--in-memory", action="store_true", help="keep messages in memory only")
    parser.add_argument("--tls-port", type=int, default=None, metavar="PORT",
                        help="also serve AMQP over TLS (and WebSocket over TLS) here, e.g. 5671 as Service Bus "
                             "does; 0 picks a free port. Off by default")
    parser.add_argument("--tls-dir", default=None, metavar="DIR",
                        help="development CA, server certificate and token issuer key (default <data-dir>/tls)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        # House rule: local stand-ins never listen beyond this machine.
        print(f"error: --host must be a loopback address, got {args.host!r}", file=sys.stderr)
        return 2
    try:
        queues = merge(load_config(args.config) if args.config else [], args.queue)
        topics = merge_topics(load_topics(args.config) if args.config else [], args.subscription, queues)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not queues and not topics:
        print("error: no queues declared; pass --queue NAME, --subscription TOPIC/NAME or --config FILE",
              file=sys.stderr)
        return 2
    tls_dir = devtls.ensure(args.tls_dir or Path(args.data_dir) / "tls")
    issuer = Issuer((tls_dir / devtls.ISSUER_KEY_FILE).read_bytes())
    store = MemoryStore() if args.in_memory else SqliteStore(args.data_dir)
    namespace = Namespace(queues, store, lambda: int(time.time() * 1000), topics)
    broker = Broker(namespace, DEV_KEY_NAME, DEV_KEY, issuer=issuer)

    def http(path: str, query: dict, headers: dict):
        return issuer.answer(query, headers) if path == IDENTITY_PATH else None

    server = Server(broker, args.host, args.port, tls_port=args.tls_port, http=http,
                    tls_context=devtls.server_context(tls_dir) if args.tls_port is not None else None)
    try:
        server.listen()
    except OSError as exc:
        store.close()
        print(f"error: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1

    def request_stop(signum, _frame) -> None:
        log("stopping", signal=signal.Signals(signum).name)
        broker.stop_requested = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    connection = connection_string(args.host, server.port)
    log("listening", host=args.host, port=server.port,
        queues=",".join(q.config.name for q in namespace.queues.values() if not q.config.topic),
        topics=",".join(f"{t.path}({','.join(s.config.name.rsplit('/', 1)[1] for s in t.subscriptions)})"
                        for t in namespace.topics.values()))
    log("ready", store=store.location, connection=connection,
        tls_port=server.tls_port if args.tls_port is not None else None,
        tls_ca=str(tls_dir / devtls.CA_FILE) if args.tls_port is not None else None,
        identity_endpoint=f"http://{args.host}:{server.port}{IDENTITY_PATH}", identity_header=DEV_IDENTITY_HEADER)
    sys.stdout.write(f"SERVICEBUS_CONNECTION={connection}\n")
    sys.stdout.flush()
    try:
        server.run(lambda: broker.stop_requested)
    finally:
        store.close()
    log("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
