"""The socket side: a small event loop that drives proton's AMQP engine directly.

proton's Python Container wraps every engine event in several handler layers (selectables,
global overrides, IO handler) and writes after each one; on a busy queue that bookkeeping cost
more CPU than the broker itself. This loop does only what the broker needs: accept, read into
each transport, hand the engine events the broker handles to it (the rest are popped without
being wrapped), then write what the transports produced, once per pass.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import ssl
import time
import traceback

from cproton import (
    isnull,
    pn_collector_peek,
    pn_collector_pop,
    pn_event_connection,
    pn_event_delivery,
    pn_event_link,
    pn_event_session,
    pn_event_transport,
    pn_event_type,
)
from proton import Collector, Connection, Delivery, EventType, Link, Session, Transport

from .log import log
from .transports import Pipeline
from .wire import ENGINE_MAX_FRAME_SIZE, Wire

_READ, _WRITE = selectors.EVENT_READ, selectors.EVENT_WRITE
COALESCE_ROUNDS = 4
READ_CHUNK = 65536
# Stop reading a client whose input the engine has not taken yet past this much.
INBUF_LIMIT = 1024 * 1024
# Advertised in the Open, as Azure's broker does: a client sends at least an empty frame this often,
# and a connection silent for twice as long is closed (the engine closes it as idle).
IDLE_TIMEOUT_S = 120.0
CHANNEL_MAX = 4999


class _Event:
    """What the broker reads of an engine event, wrapped only when asked for.

    proton's Event wraps the delivery, link, session, connection and transport of every event up
    front; a settlement needs only its delivery. Valid while the event is being handled.
    """

    __slots__ = ("_raw", "type", "_delivery", "_link")

    def __init__(self, raw, etype: EventType) -> None:
        self._raw = raw
        self.type = etype
        self._delivery = self._link = None

    @property
    def delivery(self) -> Delivery | None:
        if self._delivery is None:
            self._delivery = Delivery.wrap(pn_event_delivery(self._raw))
        return self._delivery

    @property
    def link(self) -> Link | None:
        if self._link is None:
            dlv = self.delivery
            self._link = dlv.link if dlv is not None else Link.wrap(pn_event_link(self._raw))
        return self._link

    @property
    def session(self) -> Session | None:
        link = self.link
        return link.session if link is not None else Session.wrap(pn_event_session(self._raw))

    @property
    def connection(self) -> Connection | None:
        session = self.session
        return session.connection if session is not None else Connection.wrap(pn_event_connection(self._raw))

    @property
    def transport(self) -> Transport | None:
        return Transport.wrap(pn_event_transport(self._raw))


class _Conn:
    __slots__ = ("sock", "transport", "connection", "interest", "closed", "wire", "pipeline", "inbuf", "outbuf",
                 "eof", "logged")

    def __init__(self, sock: socket.socket, transport: Transport, connection: Connection, wire: Wire,
                 pipeline: Pipeline) -> None:
        self.sock = sock
        self.transport = transport
        self.connection = connection
        self.interest = _READ
        self.closed = False
        self.wire = wire
        self.pipeline = pipeline  # TLS / WebSocket, when the client speaks them
        self.logged = False
        self.inbuf = bytearray()  # read and put through the wire, waiting for room in the engine
        self.outbuf = bytearray()  # from the engine, put through the wire, waiting for the socket
        self.eof = False  # the peer closed its side; tell the engine once inbuf is in


class _Listener:
    __slots__ = ("sock", "tls")

    def __init__(self, sock: socket.socket, tls: ssl.SSLContext | None) -> None:
        self.sock, self.tls = sock, tls


class Server:
    """Runs a broker (a proton Handler-style object with on_<event> methods) on host:port."""

    def __init__(self, broker, host: str, port: int, tick_s: float = 0.05, tls_port: int | None = None,
                 tls_context: ssl.SSLContext | None = None, http=None) -> None:
        """port: plain AMQP and AMQP over WebSocket. tls_port (with tls_context): the same inside TLS, as
        Service Bus's 5671 and 443; 0 picks a free port. Which one a client speaks is read from its first
        bytes (transports.py). http: answers plain HTTP GETs on either port (the identity endpoint)."""
        self.http = http
        self.broker = broker
        self.host, self.port = host, port
        self.tls_port, self.tls_context = tls_port, tls_context
        self.tick_s = tick_s
        self.selector = selectors.DefaultSelector()
        self.collector = Collector()
        self.conns: dict[int, _Conn] = {}
        self.listeners: list[socket.socket] = []
        # Only these engine events are wrapped and dispatched; the rest are popped unseen.
        self.handlers = {}
        for number, etype in EventType.TYPES.items():
            method = getattr(broker, etype.method, None)
            if method is not None and number < 10000:
                self.handlers[number] = (method, etype)

    def listen(self) -> None:
        self.port = self._listen(self.port, None)
        if self.tls_port is not None and self.tls_context is not None:
            self.tls_port = self._listen(self.tls_port, self.tls_context)

    def _listen(self, port: int, tls: ssl.SSLContext | None) -> int:
        family, kind, proto, _, address = socket.getaddrinfo(self.host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
            sock.listen(128)
        except OSError:
            sock.close()
            self.close_listeners()
            raise
        sock.setblocking(False)
        self.listeners.append(sock)
        self.selector.register(sock, _READ, _Listener(sock, tls))
        return sock.getsockname()[1]  # the one the system picked, when asked for port 0

    def run(self, should_stop) -> None:
        """Serve until should_stop() is true (checked at least every tick)."""
        next_tick = time.monotonic() + self.tick_s
        while not should_stop():
            timeout = max(0.0, next_tick - time.monotonic())
            if any(c.inbuf for c in self.conns.values()):
                timeout = 0.0  # the engine has input to take as soon as it has room
            try:
                ready = self.selector.select(timeout)
            except InterruptedError:
                ready = []
            for _ in range(COALESCE_ROUNDS):
                for key, mask in ready:
                    conn = key.data
                    if isinstance(conn, _Listener):
                        self._accept(conn)
                        continue
                    if mask & _READ:
                        self._read(conn)
                    if mask & _WRITE:
                        self._write(conn)
                self._process()
                # More input already waiting (other clients' settlements, flows)? Take it in before
                # writing, so one commit and one write per connection answer all of it.
                if not ready:
                    break
                ready = self.selector.select(0)
            now = time.monotonic()
            if now >= next_tick:
                next_tick = now + self.tick_s
                self._timer(now)
                self._process()
            self._flush_output()
        self.close()

    def close(self) -> None:
        for conn in list(self.conns.values()):
            self._drop(conn)
        self.close_listeners()
        self.selector.close()

    def close_listeners(self) -> None:
        for sock in self.listeners:
            with contextlib.suppress(KeyError, ValueError):
                self.selector.unregister(sock)
            sock.close()
        self.listeners.clear()

    # -- sockets --------------------------------------------------------------------------------

    def _accept(self, listener: _Listener) -> None:
        for _ in range(16):
            try:
                sock, _addr = listener.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log("accept_failed", "warning", error=repr(exc))
                return
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            connection = Connection()
            connection.collect(self.collector)
            transport = Transport(Transport.SERVER)
            # The SDK offers only SASL ANONYMOUS; access control is the CBS token, as in Service Bus.
            transport.sasl().allowed_mechs("ANONYMOUS")
            transport.max_frame_size = ENGINE_MAX_FRAME_SIZE
            transport.channel_max = CHANNEL_MAX
            transport.idle_timeout = IDLE_TIMEOUT_S * 2
            transport.bind(connection)
            conn = _Conn(sock, transport, connection, Wire(int(IDLE_TIMEOUT_S * 1000), CHANNEL_MAX),
                         Pipeline(listener.tls, self.http))
            self.conns[sock.fileno()] = conn
            self.selector.register(sock, _READ, conn)

    def _read(self, conn: _Conn) -> None:
        if conn.eof or len(conn.inbuf) >= INBUF_LIMIT:
            return
        try:
            data = conn.sock.recv(READ_CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if data:
            pipeline = conn.pipeline
            amqp = pipeline.receive(data)
            if pipeline.output:
                conn.outbuf += pipeline.output
                pipeline.output.clear()
            if amqp:
                conn.inbuf += conn.wire.incoming(amqp)
            if pipeline.decided and pipeline.layers and not conn.logged:
                conn.logged = True
                log("transport", kind=pipeline.kind)
            if pipeline.eof:
                if pipeline.failed:
                    log("transport_refused", "warning", reason=pipeline.failed)
                conn.eof = True
        else:  # the peer went away: nothing more in, and nothing more out once the engine knows
            conn.eof = True
        self._feed(conn)

    def _feed(self, conn: _Conn) -> bool:
        """Hand the engine as much buffered input as it has room for; True if it took any."""
        transport = conn.transport
        try:
            capacity = transport.capacity()
        except Exception:  # noqa: BLE001 - a transport in error takes no more input
            capacity = -1
        if capacity < 0:
            conn.inbuf.clear()
            return False
        took = False
        if conn.inbuf and capacity > 0:
            chunk = bytes(conn.inbuf[:capacity])
            try:
                transport.push(chunk)
            except Exception:  # noqa: BLE001 - proton already recorded the error on the transport
                self._close_transport(transport)
                conn.inbuf.clear()
                return True
            del conn.inbuf[:len(chunk)]
            took = True
        if conn.eof and not conn.inbuf:
            self._close_transport(transport)
            took = True
        return took

    def _write(self, conn: _Conn) -> None:
        transport = conn.transport
        try:
            pending = transport.pending()
        except Exception:  # noqa: BLE001
            pending = -1
        if pending > 0:
            data = transport.peek(pending)
            transport.pop(len(data))
            conn.outbuf += conn.pipeline.send(conn.wire.outgoing(data))
            if conn.pipeline.output:
                conn.outbuf += conn.pipeline.output
                conn.pipeline.output.clear()
        if conn.outbuf:
            try:
                sent = conn.sock.send(conn.outbuf)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                conn.outbuf.clear()
                self._close_transport(transport)
                sent = 0
            del conn.outbuf[:sent]
        try:
            reading = transport.capacity() >= 0 and not conn.eof
        except Exception:  # noqa: BLE001
            reading = False
        wanted = _READ if reading and len(conn.inbuf) < INBUF_LIMIT else 0
        if conn.outbuf:
            wanted |= _WRITE
        self._interest(conn, wanted)

    def _interest(self, conn: _Conn, wanted: int) -> None:
        if conn.closed or wanted == conn.interest:
            return
        if conn.interest and wanted:
            self.selector.modify(conn.sock, wanted, conn)
        elif wanted:
            self.selector.register(conn.sock, wanted, conn)
        else:
            self.selector.unregister(conn.sock)
        conn.interest = wanted

    def _close_transport(self, transport: Transport) -> None:
        for call in (transport.close_tail, transport.close_head):
            with contextlib.suppress(Exception):
                call()

    def _flush_output(self) -> None:
        # Input the engine had no room for earlier: hand it over, and let the broker answer it now.
        fed = False
        for conn in list(self.conns.values()):
            if not conn.closed and (conn.inbuf or conn.eof):
                fed = self._feed(conn) or fed
        if fed:
            self._process()
        # Durability first: nothing the broker changed may be acknowledged before it is committed.
        # If the store cannot commit, stop rather than acknowledge what is not stored.
        self.broker.before_output()
        for conn in list(self.conns.values()):
            if conn.closed:
                continue
            self._write(conn)
            if self._finished(conn):
                self._process()
                self._drop(conn)

    @staticmethod
    def _finished(conn: _Conn) -> bool:
        """Nothing more will be read or written (both ends closed, or failed), and nothing is left to send."""
        if conn.outbuf:
            return False
        transport = conn.transport
        try:
            return transport.closed or (transport.pending() < 0 and transport.capacity() < 0)
        except Exception:  # noqa: BLE001 - a transport in error is finished
            return True

    def _drop(self, conn: _Conn) -> None:
        if conn.closed:
            return
        conn.closed = True
        if conn.wire.renumbered:
            # Concurrent callers in the client reused or skipped delivery-ids (see wire.py); tolerated.
            log("delivery_ids_renumbered", deliveries=conn.wire.renumbered)
        self.conns.pop(conn.sock.fileno(), None)
        if conn.interest:
            with contextlib.suppress(KeyError, ValueError):
                self.selector.unregister(conn.sock)
        with contextlib.suppress(OSError):
            conn.sock.close()
        with contextlib.suppress(Exception):
            conn.transport.unbind()

    # -- engine events --------------------------------------------------------------------------

    def _process(self) -> None:
        collector = self.collector
        impl = collector._impl
        handlers = self.handlers
        while True:
            raw = pn_collector_peek(impl)
            if isnull(raw):
                break
            number = pn_event_type(raw)
            entry = handlers.get(number)
            if entry is not None:
                handler, etype = entry
                try:
                    handler(_Event(raw, etype))
                except Exception as exc:  # noqa: BLE001 - the broker guards its handlers; this is a backstop
                    log("event_failed", "error", error=repr(exc), trace=traceback.format_exc(limit=5))
            pn_collector_pop(impl)

    def _timer(self, now: float) -> None:
        try:
            self.broker.on_tick()
        except Exception as exc:  # noqa: BLE001
            log("tick_failed", "error", error=repr(exc), trace=traceback.format_exc(limit=5))
        for conn in list(self.conns.values()):
            try:
                conn.transport.tick(now)  # heartbeats and idle timeouts
            except Exception:  # noqa: BLE001
                self._close_transport(conn.transport)
