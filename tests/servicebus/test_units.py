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
