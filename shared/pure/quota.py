"""The active-job quota is a normal condition, not an error: a request that meets it is sent again later.

The re-sent message gets a new MessageId (duplicate detection would drop the same one); the original id
travels along in an application property so the job id derived from it stays the same.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

ORIGINAL_ID = "orchestrator-original-message-id"
ATTEMPTS = "orchestrator-quota-attempts"
FIRST_DELAY = timedelta(seconds=30)
MAX_DELAY = timedelta(minutes=15)


@dataclass(frozen=True)
class Resend:
    message_id: str  # the re-sent message's own id
    properties: dict[str, str | int]
    at: datetime
    attempt: int


def delay(attempts: int) -> timedelta:
    """30 s, 60 s, 120 s, ... capped at 15 minutes."""
    return min(FIRST_DELAY * 2 ** min(max(attempts, 0), 10), MAX_DELAY)


def lineage(message_id: str, properties: Mapping[str, object]) -> str:
    """The id of the request as first sent, which the job id is derived from."""
    return str(properties.get(ORIGINAL_ID) or message_id)


def resend(message_id: str, properties: Mapping[str, object], now: datetime) -> Resend:
    original = lineage(message_id, properties)
    try:
        attempt = int(properties.get(ATTEMPTS, 0)) + 1
    except (TypeError, ValueError):
        attempt = 1
    return Resend(message_id=f"{original}~quota{attempt}", properties={ORIGINAL_ID: original, ATTEMPTS: attempt},
                  at=now + delay(attempt), attempt=attempt)
