"""Fast checks of the pure parts: config parsing, SAS verification, message sections."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from urllib.parse import quote_plus, urlencode

import pytest
from proton import Message, symbol

from local.servicebus import DEV_KEY, DEV_KEY_NAME, codec
from local.servicebus.cbs import TokenRejected, verify_sas
from local.servicebus.config import ConfigError, parse_duration, queue_from_dict


def test_durations_and_queue_settings():
    assert parse_duration("PT30S", "f") == 30
    assert parse_duration("P1DT1H", "f") == 90000
    assert parse_duration(2.5, "f") == 2.5
    with pytest.raises(ConfigError, match="lockDuration"):
        queue_from_dict({"name": "q", "lockDuration": "soon"})
    with pytest.raises(ConfigError, match="unknown field"):
        queue_from_dict({"name": "q", "maxDeliveryCoutn": 3})
    q = queue_from_dict({"name": "q", "maxDeliveryCount": 3, "requiresDuplicateDetection": True})
    assert (q.max_delivery_count, q.lock_duration_s, q.duplicate_detection) == (3, 60.0, True)


def _token(audience: str, expiry: int, key: str = DEV_KEY) -> str:
    sig = base64.b64encode(hmac.new(key.encode(), f"{quote_plus(audience)}\n{expiry}".encode(), hashlib.sha256).digest())
    return "SharedAccessSignature " + urlencode({"sr": audience, "sig": sig, "se": expiry, "skn": DEV_KEY_NAME})


def test_sas_verification():
    now = time.time()
    audience = "sb://127.0.0.1:5672/jobs"
    grant = verify_sas(_token(audience, int(now) + 60), audience, DEV_KEY_NAME, DEV_KEY, now)
    assert grant.path == "jobs"
    namespace_wide = verify_sas(_token("sb://127.0.0.1:5672/", int(now) + 60), audience, DEV_KEY_NAME, DEV_KEY, now)
    assert namespace_wide.path == ""
    with pytest.raises(TokenRejected, match="ExpiredToken"):
        verify_sas(_token(audience, int(now) - 1), audience, DEV_KEY_NAME, DEV_KEY, now)
    with pytest.raises(TokenRejected, match="signature"):
        verify_sas(_token(audience, int(now) + 60, key="d3Jvbmc="), audience, DEV_KEY_NAME, DEV_KEY, now)
    with pytest.raises(TokenRejected, match="InvalidAudience"):
        verify_sas(_token("sb://127.0.0.1:5672/other", int(now) + 60), audience, DEV_KEY_NAME, DEV_KEY, now)


def test_sections_survive_the_round_trip():
    original = Message(body=b"payload", id="m-1", properties={"n": 1}, annotations={symbol("x-opt-k"): "v"})
    original.ttl = 5
    parsed = codec.parse_message(original.encode())
    assert (parsed.message_id, parsed.ttl_ms) == ("m-1", 5000)
    header = codec.encode_header(False, 4, parsed.ttl_ms, True, 0)
    annotations = codec.annotations_with(codec.encode_value(parsed.annotations), {"x-opt-sequence-number": 7})
    again = Message()
    again.decode(header + annotations + parsed.properties_raw + parsed.app_raw + parsed.body_raw)
    assert again.id == "m-1" and again.properties == {"n": 1} and bytes(again.body) == b"payload"
    assert again.annotations == {symbol("x-opt-k"): "v", symbol("x-opt-sequence-number"): 7}
    assert codec.decode_value(header)[4] == 0  # delivery-count is present even when zero


def test_malformed_and_batch_messages():
    with pytest.raises(codec.DecodeError):
        codec.parse_message(b"\x00\x53\x75\xb0\x00\x00\xff\xff")  # data section claiming 64 KB
    with pytest.raises(codec.DecodeError):
        codec.parse_message(b"garbage")
    inner = [Message(body=f"m{i}".encode()).encode() for i in range(3)]
    batch = b"".join(codec.encode_section(codec.DATA, m) for m in inner)
    assert codec.unpack_batch(batch) == inner
    assert codec.unpack_batch(Message(body=b"not a batch").encode()) is None


def test_fast_section_readers_agree_with_proton():
    from uuid import UUID

    for kwargs in ({"id": "m-1", "durable": True, "priority": 7, "ttl": 2.5}, {"id": 42}, {"id": UUID(int=5)},
                   {"id": None}, {}, {"id": "é" * 300, "first_acquirer": True, "delivery_count": 3}):
        message = Message(body=b"x", **kwargs)
        parsed = codec.parse_message(message.encode())
        assert parsed.message_id == kwargs.get("id")
        assert parsed.durable == bool(kwargs.get("durable"))
        assert parsed.priority == kwargs.get("priority", 4)
        assert parsed.ttl_ms == (int(kwargs["ttl"] * 1000) if "ttl" in kwargs else None)
    inner = [Message(body=b"y" * size).encode() for size in (10, 300)]  # short and long binary encodings
    batch = b"".join(codec.encode_section(codec.DATA, m) for m in inner)
    assert [p.body_raw for p in codec.parse_transfer(batch)] == [codec.parse_message(m).body_raw for m in inner]
    assert len(codec.parse_transfer(Message(body=b"single").encode())) == 1


def _record(seq: int):
    from local.servicebus.store import ACTIVE, Record

    return Record(seq=seq, queue="q", dead_letter=False, state=ACTIVE, enqueued_ms=1, visible_ms=1, expires_ms=0,
                  delivery_count=0, message_id=None, durable=False, priority=4, ttl_ms=None, annotations=b"",
                  properties=b"", app_properties=b"", body=b"\x00\x53\x77\x40")


def test_sqlite_commits_before_replies_and_groups_only_completions(tmp_path):
    import sqlite3

    from local.servicebus.store import GROUP_COMMIT_S, SqliteStore

    now = 0.0  # 0.0 so that now - start is exact at the window's edge
    store = SqliteStore(tmp_path, clock=lambda: now)
    other = sqlite3.connect(store.location)  # what a restarted broker would load

    def stored() -> list[int]:
        return [seq for (seq,) in other.execute("SELECT seq FROM messages ORDER BY seq")]

    store.add([_record(seq) for seq in range(1, 6)], 6)
    store.flush()  # the server calls this before writing any reply
    assert stored() == [1, 2, 3, 4, 5]
    store.remove([1], grouped=True)  # a completion may wait for the group commit...
    store.flush()
    assert stored() == [1, 2, 3, 4, 5]
    now = GROUP_COMMIT_S / 2
    store.remove([2], grouped=True)  # ...which a later completion joins without extending it
    store.flush()
    assert stored() == [1, 2, 3, 4, 5]
    now = GROUP_COMMIT_S - 0.001
    store.flush()
    assert stored() == [1, 2, 3, 4, 5]
    now = GROUP_COMMIT_S
    store.flush()  # ...but no longer than GROUP_COMMIT_S after the first
    assert stored() == [3, 4, 5]
    store.remove([3], grouped=True)
    store.remove([4])  # anything else is committed at once, and takes pending completions with it
    store.flush()
    assert stored() == [5]
    store.remove([5], grouped=True)
    store.flush()
    assert stored() == [5]
    store.close()  # a clean stop commits what is pending, whatever the clock says
    assert stored() == []
    other.close()
