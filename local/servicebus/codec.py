"""AMQP 1.0 message sections: split, decode and re-encode what the broker has to touch.

The broker keeps the bare message (properties, application properties, body) as the sender
encoded it and only rewrites the header and message annotations on delivery, so nothing a
client put in a message is lost or re-typed on the way through.
"""

from __future__ import annotations

import struct
import uuid
from dataclasses import dataclass, field
from typing import Any

from proton import Data

HEADER = 0x70
DELIVERY_ANNOTATIONS = 0x71
MESSAGE_ANNOTATIONS = 0x72
PROPERTIES = 0x73
APPLICATION_PROPERTIES = 0x74
DATA = 0x75
AMQP_SEQUENCE = 0x76
AMQP_VALUE = 0x77
FOOTER = 0x78
_BODY = (DATA, AMQP_SEQUENCE, AMQP_VALUE)


class DecodeError(ValueError):
    """The bytes are not a well-formed AMQP message."""


def _skip(buf: memoryview, pos: int) -> int:
    """Return the offset just past the encoded value starting at pos."""
    try:
        code = buf[pos]
        pos += 1
        if code == 0x00:  # described: descriptor then value
            pos = _skip(buf, pos)
            return _skip(buf, pos)
        width = code >> 4
        if width == 0x4:
            end = pos
        elif width == 0x5:
            end = pos + 1
        elif width == 0x6:
            end = pos + 2
        elif width == 0x7:
            end = pos + 4
        elif width == 0x8:
            end = pos + 8
        elif width == 0x9:
            end = pos + 16
        elif width in (0xA, 0xC, 0xE):
            end = pos + 1 + buf[pos]
        elif width in (0xB, 0xD, 0xF):
            end = pos + 4 + struct.unpack_from(">I", buf, pos)[0]
        else:
            raise DecodeError(f"unknown AMQP type code 0x{code:02x}")
    except (IndexError, struct.error) as exc:
        raise DecodeError("truncated AMQP value") from exc
    if end > len(buf):
        raise DecodeError("truncated AMQP value")
    return end


def split_sections(raw: bytes | memoryview) -> list[tuple[int, memoryview]]:
    """Cut an encoded message into (section code, encoded section) pairs."""
    buf = memoryview(raw)
    out: list[tuple[int, memoryview]] = []
    pos = 0
    while pos < len(buf):
        if buf[pos] != 0x00:
            raise DecodeError("message section is not a described type")
        # Section descriptors are small ulongs (0x53 nn) or the full ulong form (0x80 + 8 bytes).
        if pos + 2 < len(buf) and buf[pos + 1] == 0x53:
            code = buf[pos + 2]
        elif pos + 9 < len(buf) and buf[pos + 1] == 0x80:
            code = struct.unpack_from(">Q", buf, pos + 2)[0]
        else:
            raise DecodeError("message section has no numeric descriptor")
        if not HEADER <= code <= FOOTER:
            raise DecodeError(f"unknown message section 0x{code:x}")
        end = _skip(buf, pos)
        out.append((code, buf[pos:end]))
        pos = end
    return out


def decode_value(encoded: bytes | memoryview) -> Any:
    """Decode one encoded AMQP value (a described section gives its inner value)."""
    data = Data()
    try:
        data.decode(bytes(encoded))
        data.rewind()
        data.next()
        obj = data.get_object()
    except Exception as exc:  # proton raises its own DataException family
        raise DecodeError(f"undecodable AMQP value: {exc}") from exc
    if hasattr(obj, "descriptor") and hasattr(obj, "value"):
        obj = obj.value
    return _own(obj)


def _own(obj: Any) -> Any:
    # proton hands binary back as memoryviews over its own buffer; copy before it is freed.
    if isinstance(obj, memoryview):
        return bytes(obj)
    if isinstance(obj, dict):
        return {_own(k): _own(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_own(v) for v in obj]
    return obj


def encode_section(code: int, value: Any) -> bytes:
    data = Data()
    data.put_described()
    data.enter()
    data.put_ulong(code)
    data.put_object(value)
    data.exit()
    return bytes(data.encode())


def encode_value(value: Any) -> bytes:
    data = Data()
    data.put_object(value)
    return bytes(data.encode())


def encode_header(durable: bool, priority: int, ttl_ms: int | None, first_acquirer: bool, delivery_count: int) -> bytes:
    """Header with every field present: proton's encoder drops delivery-count 0 and the SDK then reads None."""
    fields = bytearray()
    fields += b"\x41" if durable else b"\x42"
    fields += bytes((0x50, priority & 0xFF))
    fields += struct.pack(">BI", 0x70, ttl_ms) if ttl_ms else b"\x40"
    fields += b"\x41" if first_acquirer else b"\x42"
    fields += struct.pack(">BI", 0x70, delivery_count)
    return b"\x00\x53\x70\xc0" + bytes((len(fields) + 1, 5)) + bytes(fields)


@dataclass(slots=True)
class Parsed:
    """What the broker needs from an incoming message, plus its sections for re-encoding."""

    durable: bool = False
    priority: int = 4
    ttl_ms: int | None = None
    annotations: dict = field(default_factory=dict)
    message_id: Any = None
    properties_raw: bytes = b""
    app_raw: bytes = b""
    body_raw: bytes = b""
    size: int = 0


def parse_message(raw: bytes | memoryview) -> Parsed:
    return _parse_sections(split_sections(raw), len(raw))


def _parse_sections(sections: list[tuple[int, memoryview]], size: int) -> Parsed:
    parsed = Parsed(size=size)
    body = []
    saw_body = False
    for code, section in sections:
        if code == HEADER:
            fields = _header_fields(section)
            parsed.durable = bool(fields[0])
            parsed.priority = 4 if fields[1] is None else int(fields[1])
            parsed.ttl_ms = None if fields[2] is None else int(fields[2])
        elif code == MESSAGE_ANNOTATIONS:
            parsed.annotations = dict(decode_value(section) or {})
        elif code == PROPERTIES:
            parsed.properties_raw = bytes(section)
            parsed.message_id = _message_id(section)
        elif code == APPLICATION_PROPERTIES:
            parsed.app_raw = bytes(section)
        elif code in _BODY or code == FOOTER:
            saw_body = saw_body or code in _BODY
            body.append(section)
        # delivery annotations are hop-by-hop and are not kept.
    if not saw_body:
        raise DecodeError("message has no body section")
    parsed.body_raw = b"".join(body)
    return parsed


# Fast paths for the sections every message has. They read the common encodings directly and
# hand anything else to proton's decoder, so the result is the same either way.
_HEADER_DEFAULT = (None, None, None, None, None)


def _header_fields(section: memoryview) -> tuple:
    """(durable, priority, ttl, first-acquirer, delivery-count) of a header section."""
    if len(section) >= 4 and section[1] == 0x53:
        code = section[3]
        if code == 0x45:  # list0
            return _HEADER_DEFAULT
        if code == 0xC0 and len(section) >= 6:
            fields: list = []
            pos, end, count = 6, len(section), section[5]
            while len(fields) < count and pos < end:
                c = section[pos]
                if c == 0x40:
                    fields.append(None)
                    pos += 1
                elif c == 0x41 or c == 0x42:
                    fields.append(c == 0x41)
                    pos += 1
                elif c == 0x56:
                    fields.append(section[pos + 1] != 0)
                    pos += 2
                elif c == 0x50 or c == 0x52:  # ubyte, smalluint
                    fields.append(section[pos + 1])
                    pos += 2
                elif c == 0x43:  # uint0
                    fields.append(0)
                    pos += 1
                elif c == 0x70:
                    fields.append(struct.unpack_from(">I", section, pos + 1)[0])
                    pos += 5
                else:
                    break
            else:
                if len(fields) == count and pos == end:
                    return tuple(fields) + (None,) * (5 - len(fields))
    fields = decode_value(section) or []
    return tuple(list(fields)[:5]) + (None,) * (5 - min(5, len(fields)))


def _message_id(section: memoryview) -> Any:
    """First field of a properties section (message-id)."""
    if len(section) >= 7 and section[1] == 0x53 and section[3] in (0xC0, 0xD0):
        pos = 6 if section[3] == 0xC0 else 12
        count = section[5] if section[3] == 0xC0 else struct.unpack_from(">I", section, 8)[0]
        if count == 0:
            return None
        if pos < len(section):
            c = section[pos]
            if c == 0x40:
                return None
            if c == 0xA1 and pos + 2 + section[pos + 1] <= len(section):
                try:
                    return bytes(section[pos + 2:pos + 2 + section[pos + 1]]).decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise DecodeError("message-id is not valid UTF-8") from exc
    fields = decode_value(section) or []
    return fields[0] if fields else None


def _data_payload(section: memoryview) -> bytes | None:
    """The bytes of a data section, or None if it is not a plain binary (let the caller decide)."""
    if len(section) >= 5 and section[1] == 0x53:
        code = section[3]
        if code == 0xA0:
            if 5 + section[4] == len(section):
                return bytes(section[5:])
        elif code == 0xB0 and len(section) >= 8 and 8 + struct.unpack_from(">I", section, 4)[0] == len(section):
            return bytes(section[8:])
    payload = decode_value(section)
    return payload if isinstance(payload, bytes) else None


def unpack_batch(raw: bytes | memoryview) -> list[bytes] | None:
    """Inner messages of an SDK batch (format 0x80013700), or None for an ordinary message.

    proton does not expose the transfer's message-format, so a batch is recognised by shape: its
    body is only data sections, each of which is itself a complete encoded message.
    """
    batch = _unpack_batch(split_sections(raw))
    return None if batch is None else [payload for payload, _ in batch]


def _unpack_batch(sections: list[tuple[int, memoryview]]) -> list[tuple[bytes, list]] | None:
    data_sections = [s for code, s in sections if code == DATA]
    if not data_sections or any(code in (AMQP_VALUE, AMQP_SEQUENCE) for code, _ in sections):
        return None
    inner: list[tuple[bytes, list]] = []
    for section in data_sections:
        payload = _data_payload(section)
        if payload is None or len(payload) < 3 or payload[:2] != b"\x00\x53":
            return None
        try:
            inner_sections = split_sections(payload)
        except DecodeError:
            return None
        if not any(code in _BODY for code, _ in inner_sections):
            return None
        inner.append((payload, inner_sections))
    return inner


def parse_transfer(raw: bytes | memoryview) -> list[Parsed]:
    """The messages of one incoming transfer: the inner messages of a batch, or the message itself."""
    sections = split_sections(raw)
    batch = _unpack_batch(sections)
    if batch is None:
        return [_parse_sections(sections, len(raw))]
    return [_parse_sections(inner_sections, len(payload)) for payload, inner_sections in batch]


def with_application_properties(app_raw: bytes, extra: dict[str, Any]) -> bytes:
    props = dict(decode_value(app_raw)) if app_raw else {}
    props.update(extra)
    return encode_section(APPLICATION_PROPERTIES, props)


def lock_token_tag(token: uuid.UUID) -> bytes:
    """The SDK reads the delivery tag as a .NET Guid (uuid.UUID(bytes_le=tag))."""
    return token.bytes_le


# Broker annotations are encoded by hand: they are a handful of symbol -> long/timestamp/string
# entries on every delivery, and splicing them into the sender's map keeps its entries untouched.
class Timestamp(int):
    pass


def _enc_symbol(text: str) -> bytes:
    raw = text.encode("ascii")
    return bytes((0xA3, len(raw))) + raw


def _enc_entry(key: str, value: object) -> bytes:
    if isinstance(value, Timestamp):
        encoded = b"\x83" + struct.pack(">q", value)
    elif isinstance(value, int):
        encoded = b"\x81" + struct.pack(">q", value)
    elif isinstance(value, str):
        raw = value.encode("utf-8")
        encoded = (bytes((0xA1, len(raw))) if len(raw) < 256 else b"\xb1" + struct.pack(">I", len(raw))) + raw
    else:
        raise TypeError(f"unsupported annotation value {value!r}")
    return _enc_symbol(key) + encoded


def _map_entries(encoded_map: bytes) -> tuple[int, bytes]:
    if not encoded_map or encoded_map[0] == 0x40:
        return 0, b""
    if encoded_map[0] == 0xC1:
        return encoded_map[2], encoded_map[3:]
    if encoded_map[0] == 0xD1:
        return struct.unpack_from(">I", encoded_map, 5)[0], encoded_map[9:]
    raise DecodeError("stored annotations are not a map")


def annotations_with(encoded_map: bytes, broker: dict[str, object]) -> bytes:
    """A message-annotations section: the sender's entries followed by the broker's."""
    count, entries = _map_entries(encoded_map)
    extra = b"".join(_enc_entry(k, v) for k, v in broker.items() if v is not None)
    count += sum(1 for v in broker.values() if v is not None) * 2
    body = struct.pack(">I", count) + entries + extra
    return b"\x00\x53\x72\xd1" + struct.pack(">I", len(body)) + body
