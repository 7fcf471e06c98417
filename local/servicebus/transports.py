"""What carries AMQP between a client and the engine: plain TCP, TLS, WebSocket, or WebSocket over TLS.

Service Bus takes AMQP on 5671 (TLS) and AMQP over WebSocket on 443 (`wss://<namespace>/$servicebus/
websocket`, subprotocol `AMQPWSB10`); the SDK with `UseDevelopmentEmulator=true` speaks plain AMQP, or
with `transport_type=AmqpOverWebsocket` plain WebSocket (`ws://`) to the same port. So every listening
port here tells them apart by a connection's first bytes: a TLS ClientHello (0x16) opens TLS (on a port
that has a certificate), `GET ` a WebSocket handshake, and anything else is AMQP. Inside TLS the same
choice is made again, so `wss://` works too.

A plain HTTP GET that is not a WebSocket upgrade may be answered by the `http` callback (the local
identity endpoint, identity.py), one request per connection.

A Pipeline turns socket bytes into AMQP bytes (receive) and back (send); layers add their own replies
(TLS handshake records, the HTTP 101, WebSocket pongs and close frames) to `output`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import ssl
import struct
import urllib.parse

WEBSOCKET_PATH = "/$servicebus/websocket"
SUBPROTOCOL = "AMQPWSB10"
_WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MAX_HANDSHAKE = 16 * 1024
MAX_WS_FRAME = 16 * 1024 * 1024


class Layer:
    """One wrapping around the AMQP stream."""

    name = "layer"

    def __init__(self, emit) -> None:
        self.emit = emit  # send bytes outward (through the layers outside this one) to the socket
        self.eof = False  # the peer closed this layer: no more input will come
        self.failed: str | None = None  # a protocol error: answer sent, connection to close

    def decode(self, data: bytes) -> bytes:
        raise NotImplementedError

    def encode(self, data: bytes) -> bytes:
        raise NotImplementedError


class TlsLayer(Layer):
    name = "tls"

    def __init__(self, emit, context: ssl.SSLContext) -> None:
        super().__init__(emit)
        self._in, self._out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self._tls = context.wrap_bio(self._in, self._out, server_side=True)
        self._ready = False
        self._held = bytearray()

    def decode(self, data: bytes) -> bytes:
        if data:
            self._in.write(data)
        out = bytearray()
        try:
            if not self._ready:
                self._tls.do_handshake()
                self._ready = True
                if self._held:
                    self._tls.write(bytes(self._held))
                    self._held.clear()
            while True:
                chunk = self._tls.read(65536)
                if not chunk:
                    self.eof = True
                    break
                out += chunk
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            pass
        except ssl.SSLZeroReturnError:
            self.eof = True
        except ssl.SSLError as exc:
            self.failed = f"TLS: {exc.reason or exc}"
            self.eof = True
        self._flush()
        return bytes(out)

    def encode(self, data: bytes) -> bytes:
        if not self._ready:
            self._held += data
            return b""
        try:
            self._tls.write(data)
        except ssl.SSLError as exc:
            self.failed = f"TLS: {exc.reason or exc}"
            self.eof = True
        return self._out.read()

    def _flush(self) -> None:
        pending = self._out.read()
        if pending:
            self.emit(pending)


class WebSocketLayer(Layer):
    """The server side of RFC 6455 for AMQP: one HTTP upgrade on WEBSOCKET_PATH, then binary frames."""

    name = "websocket"

    def __init__(self, emit, http=None) -> None:
        super().__init__(emit)
        self.http = http  # (path, query, headers) -> (status, JSON body) or None: plain HTTP GETs served here
        self._buf = bytearray()
        self._open = False
        self._held = bytearray()
        self._closing = False

    def decode(self, data: bytes) -> bytes:
        self._buf += data
        if not self._open:
            end = self._buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buf) > MAX_HANDSHAKE:
                    self._refuse(431, "Request Header Fields Too Large", "handshake too long")
                return b""
            request = bytes(self._buf[:end]).decode("latin-1")
            del self._buf[:end + 4]
            if not self._handshake(request):
                return b""
        return self._frames()

    def _handshake(self, request: str) -> bool:
        lines = request.split("\r\n")
        parts = lines[0].split(" ")
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if len(parts) != 3 or parts[0] != "GET":
            return self._refuse(400, "Bad Request", "not a GET request")
        path, _, query = parts[1].partition("?")
        if path.rstrip("/").lower() != WEBSOCKET_PATH.lower() and self.http is not None:
            answer = self.http(path, dict(urllib.parse.parse_qsl(query)), headers)
            if answer is not None:
                return self._answer(*answer)
        if path.rstrip("/").lower() != WEBSOCKET_PATH.lower():
            return self._refuse(404, "Not Found", f"no WebSocket endpoint at {path} (use {WEBSOCKET_PATH})")
        key = headers.get("sec-websocket-key")
        if "websocket" not in headers.get("upgrade", "").lower() or not key:
            return self._refuse(400, "Bad Request", "not a WebSocket upgrade")
        protocols = [p.strip() for p in headers.get("sec-websocket-protocol", "").split(",")]
        if SUBPROTOCOL not in protocols:
            return self._refuse(400, "Bad Request", f"the WebSocket subprotocol must be {SUBPROTOCOL}")
        accept = base64.b64encode(hashlib.sha1(key.encode() + _WS_GUID).digest()).decode()
        self.emit(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   f"Sec-WebSocket-Accept: {accept}\r\nSec-WebSocket-Protocol: {SUBPROTOCOL}\r\n\r\n").encode())
        self._open = True
        if self._held:
            self.emit(_frame(0x2, bytes(self._held)))
            self._held.clear()
        return True

    def _answer(self, status: int, body: dict) -> bool:
        raw = json.dumps(body).encode()
        reason = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found"}.get(status, "Error")
        self.emit(f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {len(raw)}\r\n"
                  "Connection: close\r\n\r\n".encode() + raw)
        self.eof = True  # one request per connection
        self._buf.clear()
        return False

    def _refuse(self, status: int, reason: str, detail: str) -> bool:
        body = detail.encode()
        self.emit(f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\n"
                  f"Connection: close\r\n\r\n".encode() + body)
        self.failed = f"WebSocket handshake refused: {detail}"
        self.eof = True
        self._buf.clear()
        return False

    def _frames(self) -> bytes:
        out = bytearray()
        buf = self._buf
        while len(buf) >= 2 and not self.eof:
            opcode = buf[0] & 0x0F
            masked = buf[1] & 0x80
            length = buf[1] & 0x7F
            pos = 2
            if length == 126:
                if len(buf) < 4:
                    break
                length = struct.unpack_from(">H", buf, 2)[0]
                pos = 4
            elif length == 127:
                if len(buf) < 10:
                    break
                length = struct.unpack_from(">Q", buf, 2)[0]
                pos = 10
            if not masked or length > MAX_WS_FRAME:
                # RFC 6455: a client's frames are masked; close with a protocol error (1002).
                self.emit(_frame(0x8, struct.pack(">H", 1002)))
                self.failed = "WebSocket: unmasked or oversized client frame"
                self.eof = True
                break
            if len(buf) < pos + 4 + length:
                break
            mask = bytes(buf[pos:pos + 4])
            payload = _unmask(bytes(buf[pos + 4:pos + 4 + length]), mask)
            del buf[:pos + 4 + length]
            if opcode in (0x0, 0x1, 0x2):
                out += payload
            elif opcode == 0x8:  # close: answer it, then no more input
                self.emit(_frame(0x8, payload[:2]))
                self._closing = True
                self.eof = True
            elif opcode == 0x9:
                self.emit(_frame(0xA, payload))
            # 0xA (pong) needs nothing
        return bytes(out)

    def encode(self, data: bytes) -> bytes:
        if not data:
            return b""
        if not self._open:
            self._held += data
            return b""
        if self._closing:
            return b""
        return _frame(0x2, data)


def _frame(opcode: int, payload: bytes) -> bytes:
    head = bytes((0x80 | opcode,))
    n = len(payload)
    if n < 126:
        head += bytes((n,))
    elif n < 65536:
        head += b"\x7e" + struct.pack(">H", n)
    else:
        head += b"\x7f" + struct.pack(">Q", n)
    return head + payload


def _unmask(payload: bytes, mask: bytes) -> bytes:
    if not payload:
        return payload
    key = int.from_bytes((mask * (len(payload) // 4 + 1))[:len(payload)], "big")
    return (int.from_bytes(payload, "big") ^ key).to_bytes(len(payload), "big")


class Pipeline:
    """Socket bytes <-> AMQP bytes for one connection, its layers chosen by what the client sends first."""

    def __init__(self, tls: ssl.SSLContext | None = None, http=None) -> None:
        self.tls = tls
        self.http = http
        self.layers: list[Layer] = []  # outermost first
        self.decided = False
        self._sniff = b""
        self._held = bytearray()  # AMQP output before the layers are known
        self.output = bytearray()  # bytes for the socket

    @property
    def kind(self) -> str:
        return "+".join(layer.name for layer in self.layers) or "amqp"

    @property
    def eof(self) -> bool:
        return any(layer.eof for layer in self.layers)

    @property
    def failed(self) -> str | None:
        return next((layer.failed for layer in self.layers if layer.failed), None)

    def _emitter(self, index: int):
        def emit(data: bytes) -> None:
            for layer in reversed(self.layers[:index]):
                data = layer.encode(data)
            self.output += data

        return emit

    def receive(self, data: bytes) -> bytes:
        if self.decided and not self.layers:
            return data
        for layer in self.layers:
            data = layer.decode(data)
        while not self.decided:
            self._sniff += data
            data = b""
            if len(self._sniff) < 4 and not self.eof:
                return b""
            first, self._sniff = self._sniff, b""
            inside_tls = any(isinstance(layer, TlsLayer) for layer in self.layers)
            if first[:1] == b"\x16" and self.tls is not None and not inside_tls and not self.layers:
                self.layers.append(TlsLayer(self._emitter(len(self.layers)), self.tls))
            elif first[:4] == b"GET " and not any(isinstance(la, WebSocketLayer) for la in self.layers):
                self.layers.append(WebSocketLayer(self._emitter(len(self.layers)), self.http))
            else:
                self.decided = True
                if self._held:
                    held = bytes(self._held)
                    self._held.clear()
                    self.output += self.send(held)
                return first
            data = self.layers[-1].decode(first)
        return data

    def send(self, data: bytes) -> bytes:
        """AMQP bytes from the engine, as bytes for the socket (plus anything the layers queued)."""
        if not self.decided:
            self._held += data
            return b""
        for layer in reversed(self.layers):
            data = layer.encode(data)
        return data
