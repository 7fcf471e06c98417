"""A stored record as the bytes a client receives: fresh header and annotations, bare message as sent."""

from __future__ import annotations

from . import codec
from .store import Record


def render(record: Record, locked_until_ms: int | None = None) -> bytes:
    header = codec.encode_header(
        record.durable, record.priority, record.ttl_ms, record.delivery_count == 0, record.delivery_count
    )
    broker = {
        "x-opt-sequence-number": record.seq,
        "x-opt-enqueued-time": codec.Timestamp(record.enqueued_ms),
        "x-opt-message-state": record.state,
        "x-opt-locked-until": None if locked_until_ms is None else codec.Timestamp(locked_until_ms),
        "x-opt-deadletter-source": record.dead_letter_source,
    }
    annotations = codec.annotations_with(record.annotations, broker)
    return b"".join((header, annotations, record.properties, record.app_properties, record.body))
