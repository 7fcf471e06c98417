"""The frame layer between sockets and the engine (local/servicebus/wire.py), on hand-made frames."""

from __future__ import annotations

import struct

from local.servicebus import wire
from local.servicebus.wire import Wire, encode_list, encode_uint, parse_frame

HEADER = b"AMQP\x00\x01\x00\x00"


def frame(code: int, fields: list[bytes], channel: int = 0, payload: bytes = b"", kind: int = 0) -> bytes:
    body = b"\x00\x53" + bytes((code,)) + encode_list(fields) + payload
    return struct.pack(">IBBH", 8 + len(body), 2, kind, channel) + body


def transfer(handle: int, delivery_id: int, tag: bytes, payload: bytes, more: bool = False) -> bytes:
    fields = [encode_uint(handle), encode_uint(delivery_id), b"\xa0" + bytes((len(tag),)) + tag, encode_uint(0),
              b"\x42", b"\x41" if more else b"\x42"]
    return frame(wire.TRANSFER, fields, payload=payload)


def frames(data: bytes) -> list:
    out, pos = [], 0
    while pos < len(data):
        if data[pos:pos + 4] == b"AMQP":
            pos += 8
            continue
        size = struct.unpack_from(">I", data, pos)[0]
        out.append(parse_frame(memoryview(data)[pos:pos + size]))
        pos += size
    return out


def ids(data: bytes) -> list:
    return [wire.decode_uint(p.get(1)) for p in frames(data)]


def test_reused_and_skipped_delivery_ids_are_renumbered_and_settled_under_the_clients_ids():
    w = Wire()
    w.outgoing(frame(wire.BEGIN, [encode_uint(0), encode_uint(0), encode_uint(100), encode_uint(100)]))
    into_engine = w.incoming(HEADER + b"".join(transfer(1, i, bytes((n,)), b"x") for n, i in
                                               enumerate([0, 1, 1, 3, 5])))
    assert ids(into_engine) == [0, 1, 2, 3, 4]
    assert w.renumbered == 2  # engine ids 2 and 4
    # The engine settles engine ids 0..4 in one disposition; the client hears of 0, 1, 3 and 5.
    settle = frame(wire.DISPOSITION, [b"\x41", encode_uint(0), encode_uint(4), b"\x41", b"\x00\x53\x24\x45"])
    to_client = frames(w.outgoing(settle))
    assert [(wire.decode_uint(p.get(1)), wire.decode_uint(p.get(2))) for p in to_client] == [(0, 1), (3, 3), (5, 5)]
    assert all(len(p.fields) == 6 and p.get(4) == b"\x00\x53\x24\x45" for p in to_client)
    # The engine's numbering goes on from its own count, whatever the client's counter says.
    assert ids(w.incoming(transfer(1, 6, b"z", b"y"))) == [5]


def test_multi_frame_delivery_keeps_one_id():
    w = Wire()
    w.incoming(transfer(0, 7, b"a", b"1"))
    parts = w.incoming(transfer(0, 7, b"b", b"2", more=True) + transfer(0, 7, b"b", b"3"))
    assert ids(parts) == [8, 8]
    assert [bytes(p.payload) for p in frames(parts)] == [b"2", b"3"]


def test_engine_frames_get_every_field_and_the_open_says_what_azure_says():
    w = Wire(idle_timeout_ms=120000, channel_max=4999)
    out = frames(w.outgoing(HEADER + frame(wire.OPEN, [b"\xa1\x03abc", b"\x40", b"\x70\x00\x01\x01\x00"])))
    [open_] = out
    assert len(open_.fields) == 10
    assert wire.decode_uint(open_.get(2)) == wire.ADVERTISED_MAX_FRAME_SIZE
    assert wire.decode_uint(open_.get(3)) == 4999 and wire.decode_uint(open_.get(4)) == 120000
    [t] = frames(w.outgoing(transfer(2, 9, b"t", b"payload")))
    assert len(t.fields) == 11 and bytes(t.payload) == b"payload" and wire.decode_uint(t.get(1)) == 9
    [attach] = frames(w.outgoing(frame(wire.ATTACH, [b"\xa1\x01n", encode_uint(0), b"\x41"])))
    assert len(attach.fields) == 14 and attach.get(3) == b"\x50\x02"  # snd-settle-mode's default, mixed


def test_client_max_frame_size_leaves_room_for_padding():
    w = Wire()
    [open_] = frames(w.incoming(HEADER + frame(wire.OPEN, [b"\xa1\x01c", b"\x40", encode_uint(65536)])))
    assert wire.decode_uint(open_.get(2)) == 65536 - wire.PADDING_ROOM


def test_input_split_anywhere_gives_the_same_frames():
    data = HEADER + transfer(0, 0, b"a", b"p" * 300) + transfer(0, 0, b"b", b"q")
    whole = Wire().incoming(data)
    w = Wire()
    assert b"".join(w.incoming(data[i:i + 1]) for i in range(len(data))) == whole


def test_what_is_not_framing_passes_through():
    w = Wire()
    garbage = b"\xff\xff\xff\xffnot amqp at all"
    assert w.incoming(garbage) == garbage
    assert w.incoming(b"more") == b"more"
