"""AMQP frames between the socket and proton's engine: what Azure's broker does that proton does not.

Two differences matter to the azure-servicebus SDK, and both are fixed here, frame by frame, so the
engine and the broker never see them:

- **Delivery-ids the client reuses.** The SDK numbers a session's transfers from one counter that
  concurrent callers read and bump without a lock (AutoLockRenewer's renew-lock requests, sync
  threads or async tasks), so the same delivery-id can go out twice, or one can be skipped.
  Service Bus takes those transfers as they come; proton closes the connection ("sequencing
  error, expected delivery-id 2, got 1"). Each new incoming delivery is renumbered to the id the
  engine expects, and the dispositions the engine sends for it carry the client's own id again,
  so the client's bookkeeping (which of its sends are settled) is what it would be with Azure.
- **Performatives with every field.** Proton leaves out trailing fields that hold their default;
  Azure's broker writes all of them, and SDK releases before 7.15 read performatives by index
  (7.14's Open handling reads idle-timeout as `frame[4]`, and a transfer's payload as `frame[11]`).
  Every frame the engine sends is padded with the omitted fields, written out as their AMQP
  defaults. The Open also says what Azure's says: a 64 KiB max-frame-size, channel-max 4999 and
  an idle-timeout (see server.py).

Frames are parsed only as far as needed: the frame header and the performative's field list. A
stream that is not AMQP framing (garbage, a half-sent frame at close) is passed on untouched, for
the engine to refuse as it always did.
"""

from __future__ import annotations

import struct

from .codec import DecodeError, _skip

HEADER_PREFIX = b"AMQP"
AMQP_FRAME, SASL_FRAME = 0, 1
OPEN, BEGIN, ATTACH, FLOW, TRANSFER, DISPOSITION, DETACH, END, CLOSE = range(0x10, 0x19)
# What clients are told; the engine itself accepts a little more, room for renumbered delivery-ids.
ADVERTISED_MAX_FRAME_SIZE = 65536
ENGINE_MAX_FRAME_SIZE = ADVERTISED_MAX_FRAME_SIZE + 256
# The client's own limit is lowered by this much before the engine sees it: padding a frame the
# engine filled to the client's limit must not take it over.
PADDING_ROOM = 64
# Past this a "frame" is not one: stop parsing and pass the bytes through for the engine to refuse.
MAX_PARSED_FRAME = 16 * 1024 * 1024

_NULL = b"\x40"
_FALSE = b"\x42"
_UINT_MAX = b"\x70\xff\xff\xff\xff"
# Each performative's fields, as the AMQP 1.0 spec defines their defaults ("" = no default, null).
_DEFAULTS: dict[tuple[int, int], tuple[bytes, ...]] = {
    (AMQP_FRAME, OPEN): (_NULL, _NULL, _UINT_MAX, b"\x60\xff\xff", _NULL, _NULL, _NULL, _NULL, _NULL, _NULL),
    (AMQP_FRAME, BEGIN): (_NULL, _NULL, _NULL, _NULL, _UINT_MAX, _NULL, _NULL, _NULL),
    (AMQP_FRAME, ATTACH): (_NULL, _NULL, _NULL, b"\x50\x02", b"\x50\x00", _NULL, _NULL, _NULL, _FALSE, _NULL,
                           _NULL, _NULL, _NULL, _NULL),
    (AMQP_FRAME, FLOW): (_NULL,) * 8 + (_FALSE, _FALSE, _NULL),
    (AMQP_FRAME, TRANSFER): (_NULL,) * 5 + (_FALSE, _NULL, _NULL, _FALSE, _FALSE, _FALSE),
    (AMQP_FRAME, DISPOSITION): (_NULL, _NULL, _NULL, _FALSE, _NULL, _FALSE),
    (AMQP_FRAME, DETACH): (_NULL, _FALSE, _NULL),
    (AMQP_FRAME, END): (_NULL,),
    (AMQP_FRAME, CLOSE): (_NULL,),
    (SASL_FRAME, 0x40): (_NULL,),  # sasl-mechanisms
    (SASL_FRAME, 0x41): (_NULL, _NULL, _NULL),  # sasl-init
    (SASL_FRAME, 0x42): (_NULL,),  # sasl-challenge
    (SASL_FRAME, 0x43): (_NULL,),  # sasl-response
    (SASL_FRAME, 0x44): (_NULL, _NULL),  # sasl-outcome
}


def encode_uint(value: int) -> bytes:
    if value == 0:
        return b"\x43"
    if value < 256:
        return bytes((0x52, value))
    return b"\x70" + struct.pack(">I", value & 0xFFFFFFFF)


def decode_uint(raw: bytes | memoryview | None) -> int | None:
    if raw is None or not len(raw):
        return None
    code = raw[0]
    if code == 0x40:
        return None
    if code == 0x43:
        return 0
    if code in (0x50, 0x52):
        return raw[1]
    if code == 0x60:
        return struct.unpack_from(">H", raw, 1)[0]
    if code == 0x70:
        return struct.unpack_from(">I", raw, 1)[0]
    raise DecodeError(f"not a uint: 0x{code:02x}")


def decode_bool(raw: bytes | memoryview | None) -> bool:
    if raw is None or not len(raw):
        return False
    code = raw[0]
    if code == 0x56:
        return raw[1] != 0
    return code == 0x41


def encode_list(fields: list) -> bytes:
    content = b"".join(bytes(f) for f in fields)
    if len(content) + 1 <= 255:
        return bytes((0xC0, len(content) + 1, len(fields))) + content
    return b"\xd0" + struct.pack(">II", len(content) + 4, len(fields)) + content


class Performative:
    """A frame's performative as raw encoded fields, plus what follows it (a transfer's payload)."""

    __slots__ = ("kind", "channel", "code", "fields", "payload", "descriptor")

    def __init__(self, kind: int, channel: int, code: int, descriptor: bytes, fields: list, payload) -> None:
        self.kind, self.channel, self.code, self.descriptor = kind, channel, code, descriptor
        self.fields, self.payload = fields, payload

    def get(self, index: int):
        return self.fields[index] if index < len(self.fields) else None

    def set(self, index: int, raw: bytes) -> None:
        while len(self.fields) <= index:
            self.fields.append(_NULL)
        self.fields[index] = raw

    def encode(self, pad: bool = True) -> bytes:
        fields = self.fields
        if pad:
            defaults = _DEFAULTS.get((self.kind, self.code))
            if defaults is not None and len(fields) < len(defaults):
                fields = fields + list(defaults[len(fields):])
        body = self.descriptor + encode_list(fields) + bytes(self.payload)
        return struct.pack(">IBBH", 8 + len(body), 2, self.kind, self.channel) + body


def parse_frame(frame: memoryview) -> Performative | None:
    """The performative of one whole frame, or None for an empty (heartbeat) frame."""
    doff, kind = frame[4], frame[5]
    channel = struct.unpack_from(">H", frame, 6)[0]
    start = doff * 4
    if start < 8 or start > len(frame):
        raise DecodeError("bad data offset")
    if start == len(frame):
        return None
    body = frame[start:]
    if body[0] != 0x00:
        raise DecodeError("performative is not a described type")
    if body[1] == 0x53:
        code, pos = body[2], 3
    elif body[1] == 0x80:
        code, pos = struct.unpack_from(">Q", body, 2)[0], 10
    else:
        raise DecodeError("performative has no numeric descriptor")
    descriptor = bytes(body[:pos])
    list_code = body[pos]
    if list_code == 0x45:
        count, first, end = 0, pos + 1, pos + 1
    elif list_code == 0xC0:
        size, count = body[pos + 1], body[pos + 2]
        first, end = pos + 3, pos + 2 + size
    elif list_code == 0xD0:
        size, count = struct.unpack_from(">II", body, pos + 1)
        first, end = pos + 9, pos + 5 + size
    else:
        raise DecodeError("performative is not a list")
    if end > len(body):
        raise DecodeError("truncated performative")
    fields = []
    at = first
    for _ in range(count):
        nxt = _skip(body, at)
        if nxt > end:
            raise DecodeError("truncated performative field")
        fields.append(body[at:nxt])
        at = nxt
    return Performative(kind, channel, code, descriptor, fields, body[end:])


def _padded(frame: memoryview, kind: int, code: int | None, start: int) -> bytes:
    """The frame with its performative's omitted trailing fields written out, without parsing the fields."""
    defaults = _DEFAULTS.get((kind, code))
    if defaults is None or len(frame) <= start + 3:
        return bytes(frame)
    pos = start + 3
    list_code = frame[pos]
    if list_code == 0x45:
        count, content, rest = 0, b"", frame[pos + 1:]
    elif list_code == 0xC0:
        size, count = frame[pos + 1], frame[pos + 2]
        content, rest = frame[pos + 3:pos + 2 + size], frame[pos + 2 + size:]
    elif list_code == 0xD0:
        size, count = struct.unpack_from(">II", frame, pos + 1)
        content, rest = frame[pos + 9:pos + 5 + size], frame[pos + 5 + size:]
    else:
        raise DecodeError("performative is not a list")
    if count >= len(defaults):
        return bytes(frame)
    extra = b"".join(defaults[count:])
    length = len(content) + len(extra)
    if length + 1 <= 255:
        head = bytes((0xC0, length + 1, len(defaults)))
    else:
        head = b"\xd0" + struct.pack(">II", length + 4, len(defaults))
    body_len = 3 + len(head) + length + len(rest)
    return b"".join((struct.pack(">IBBH", 8 + body_len, 2, kind, struct.unpack_from(">H", frame, 6)[0]),
                     bytes(frame[start:start + 3]), head, content, extra, rest))


class _Stream:
    """Cuts one direction of a connection into protocol headers and frames."""

    def __init__(self, on_frame) -> None:
        self.on_frame = on_frame
        self.buf = bytearray()
        self.raw = False  # gave up parsing: everything passes through as it is

    def feed(self, data: bytes) -> bytes:
        if self.raw:
            return data
        self.buf += data
        buf = self.buf
        out = []
        pos = 0
        n = len(buf)
        while n - pos >= 8:
            if buf[pos:pos + 4] == HEADER_PREFIX:
                out.append(bytes(buf[pos:pos + 8]))
                pos += 8
                continue
            size = struct.unpack_from(">I", buf, pos)[0]
            if size < 8 or size > MAX_PARSED_FRAME:
                return self._give_up(out, pos)
            if n - pos < size:
                break
            frame = memoryview(buf)[pos:pos + size]
            try:
                out.append(self.on_frame(frame))
            except (DecodeError, IndexError, struct.error):
                frame.release()
                return self._give_up(out, pos)
            frame.release()
            pos += size
        del buf[:pos]
        return b"".join(out)

    def _give_up(self, out: list, pos: int) -> bytes:
        self.raw = True
        out.append(bytes(self.buf[pos:]))
        self.buf = bytearray()
        return b"".join(out)


class _Channel:
    """One session's delivery-id bookkeeping, keyed by the client's channel number."""

    __slots__ = ("expected", "client_ids", "more")

    def __init__(self) -> None:
        self.expected: int | None = None  # the next delivery-id the engine expects
        self.client_ids: dict[int, int] = {}  # engine's id -> client's id, only where they differ
        self.more: dict[int, int] = {}  # link handle -> engine id of its unfinished multi-frame delivery


class Wire:
    """Both directions of one connection: incoming() before the engine, outgoing() after it."""

    def __init__(self, idle_timeout_ms: int | None = None, channel_max: int | None = None) -> None:
        self.idle_timeout_ms = idle_timeout_ms
        self.channel_max = channel_max
        self._in = _Stream(self._incoming_frame)
        self._out = _Stream(self._outgoing_frame)
        self._channels: dict[int, _Channel] = {}  # client's channel -> bookkeeping
        self._to_client_channel: dict[int, int] = {}  # engine's channel -> client's channel
        self.renumbered = 0  # deliveries whose id the client reused or skipped (for logs and tests)

    def incoming(self, data: bytes) -> bytes:
        return self._in.feed(data)

    def outgoing(self, data: bytes) -> bytes:
        return self._out.feed(data)

    # -- client -> engine -------------------------------------------------------------------------

    def _incoming_frame(self, frame: memoryview) -> bytes:
        kind = frame[5]
        # Fast path: only opens, transfers, sender dispositions and ends are looked at.
        if kind != AMQP_FRAME or len(frame) <= 8:
            return bytes(frame)
        start = frame[4] * 4
        code = frame[start + 2] if len(frame) > start + 2 and frame[start + 1] == 0x53 else None
        if code not in (OPEN, TRANSFER, DISPOSITION, END):
            return bytes(frame)
        perf = parse_frame(frame)
        if code == OPEN:
            limit = decode_uint(perf.get(2))
            if limit is not None and limit > PADDING_ROOM + 512:
                perf.set(2, encode_uint(limit - PADDING_ROOM))
                return perf.encode(pad=False)
            return bytes(frame)
        if code == END:
            self._channels.pop(perf.channel, None)
            return bytes(frame)
        if code == DISPOSITION:
            return self._client_disposition(perf, frame)
        return self._client_transfer(perf, frame)

    def _client_transfer(self, perf: Performative, frame: memoryview) -> bytes:
        chan = self._channels.setdefault(perf.channel, _Channel())
        handle = decode_uint(perf.get(0))
        client_id = decode_uint(perf.get(1))
        more = decode_bool(perf.get(5)) and not decode_bool(perf.get(9))
        if handle in chan.more:  # a later frame of a delivery already numbered
            engine_id = chan.more[handle] if more else chan.more.pop(handle)
        else:
            if client_id is None:  # not allowed on a first frame; let the engine judge it
                return bytes(frame)
            if chan.expected is None:
                chan.expected = client_id  # the engine, too, starts from the first id it sees
            engine_id = chan.expected
            chan.expected = (engine_id + 1) & 0xFFFFFFFF
            if more:
                chan.more[handle] = engine_id
            if engine_id != client_id:
                chan.client_ids[engine_id] = client_id
                self.renumbered += 1
        if client_id is None or client_id == engine_id:
            return bytes(frame)
        perf.set(1, encode_uint(engine_id))
        return perf.encode(pad=False)

    def _client_disposition(self, perf: Performative, frame: memoryview) -> bytes:
        # role true = receiver: about the engine's own deliveries, numbered by the engine. Only a
        # sender's disposition (the client settling its own sends) names the client's ids.
        chan = self._channels.get(perf.channel)
        if decode_bool(perf.get(0)) or chan is None or not chan.client_ids:
            return bytes(frame)
        first = decode_uint(perf.get(1))
        last = decode_uint(perf.get(2))
        last = first if last is None else last
        wanted = set(range(first, last + 1))
        engine_ids = {e for e, c in chan.client_ids.items() if c in wanted}
        engine_ids |= {i for i in wanted if i not in chan.client_ids}
        return self._ranges(perf, sorted(engine_ids))

    # -- engine -> client -------------------------------------------------------------------------

    def _outgoing_frame(self, frame: memoryview) -> bytes:
        kind = frame[5]
        start = frame[4] * 4
        code = frame[start + 2] if len(frame) > start + 2 and frame[start + 1] == 0x53 else None
        if kind == AMQP_FRAME and code in (TRANSFER, FLOW, ATTACH, DETACH, CLOSE) or kind == SASL_FRAME:
            return _padded(frame, kind, code, start)
        perf = parse_frame(frame)
        if perf is None:
            return bytes(frame)
        if perf.kind == AMQP_FRAME:
            if perf.code == OPEN:
                perf.set(2, encode_uint(ADVERTISED_MAX_FRAME_SIZE))
                if self.channel_max is not None:
                    perf.set(3, b"\x60" + struct.pack(">H", self.channel_max))
                if self.idle_timeout_ms:
                    perf.set(4, encode_uint(self.idle_timeout_ms))
            elif perf.code == BEGIN:
                remote = decode_uint(perf.get(0))
                if remote is not None:
                    self._to_client_channel[perf.channel] = remote
            elif perf.code == END:
                client = self._to_client_channel.pop(perf.channel, None)
                if client is not None:
                    self._channels.pop(client, None)
            elif perf.code == DISPOSITION and decode_bool(perf.get(0)):
                return self._engine_disposition(perf)
        return perf.encode()

    def _engine_disposition(self, perf: Performative) -> bytes:
        """A receiver's disposition for the client's deliveries: back to the client's delivery-ids."""
        client_channel = self._to_client_channel.get(perf.channel)
        chan = self._channels.get(client_channel) if client_channel is not None else None
        if chan is None or not chan.client_ids:
            return perf.encode()
        first = decode_uint(perf.get(1))
        last = decode_uint(perf.get(2))
        last = first if last is None else last
        settled = decode_bool(perf.get(3))
        ids = set()
        for engine_id in range(first, last + 1):
            ids.add(chan.client_ids.get(engine_id, engine_id))
            if settled:
                chan.client_ids.pop(engine_id, None)
        return self._ranges(perf, sorted(ids))

    def _ranges(self, perf: Performative, ids: list[int]) -> bytes:
        """The disposition once per run of consecutive ids."""
        if not ids:
            return b""
        out = []
        run_start = prev = ids[0]
        for i in ids[1:] + [None]:
            if i is not None and i == prev + 1:
                prev = i
                continue
            perf.set(1, encode_uint(run_start))
            perf.set(2, encode_uint(prev))
            out.append(perf.encode())
            if i is not None:
                run_start = prev = i
        return b"".join(out)
