"""Every retry the orchestrator schedules, decided in one place: how long to wait, and when to stop.

A request that meets the active-job quota, or a Batch that is throttling or down, is not an error: the
request is sent again later as a scheduled message, with a delay that grows. (Abandoning it instead would
have Service Bus redeliver it at once, and a Batch outage of minutes would dead-letter it.) The re-sent
message gets a new MessageId, as duplicate detection would drop the same one; the original id travels
along so the job id derived from it stays the same.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

ORIGINAL_ID = "orchestrator-original-message-id"
ATTEMPTS = "orchestrator-retry-attempts"
REASON = "orchestrator-retry-reason"

QUOTA, TRANSIENT = "quota", "transient"


@dataclass(frozen=True)
class Backoff:
    first: timedelta
    longest: timedelta
    attempts: int | None  # None: never give up

    def delay(self, attempt: int) -> timedelta:
        """first, 2x first, 4x first, ... up to longest (attempt counts from 1)."""
        return min(self.first * 2 ** min(max(attempt, 1), 16), self.longest)


POLICIES = {
    # The quota frees up as jobs end: waiting is always right.
    QUOTA: Backoff(first=timedelta(seconds=30), longest=timedelta(minutes=15), attempts=None),
    # 100 attempts, most of them 15 minutes apart: a day of Batch outage before a request is given up
    # (then Service Bus dead-letters it, with the reason).
    TRANSIENT: Backoff(first=timedelta(seconds=15), longest=timedelta(minutes=15), attempts=100),
}


@dataclass(frozen=True)
class Resend:
    message_id: str  # the re-sent message's own id
    properties: dict[str, str | int]
    at: datetime
    attempt: int
    reason: str


def delay(attempts: int, kind: str = QUOTA) -> timedelta:
    return POLICIES[kind].delay(attempts)


def lineage(message_id: str, properties: Mapping[str, object]) -> str:
    """The id of the request as first sent, which the job id is derived from. Only trust properties that
    went through `verified` first: a sender can set them."""
    return str(properties.get(ORIGINAL_ID) or message_id)


def claims_lineage(message_id: str, properties: Mapping[str, object]) -> bool:
    return ORIGINAL_ID in properties or ATTEMPTS in properties or REASON in properties


def body_digest(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def resend_record(again: Resend, digest: str) -> dict[str, str | int]:
    """What the orchestrator keeps about a re-send it scheduled, so the re-send can prove its lineage:
    its id, its properties and the digest of the body it carries."""
    return {"messageId": again.message_id, **again.properties, "bodySha256": digest}


def verified(message_id: str, properties: Mapping[str, object], record: Mapping[str, object] | None,
             digest: str) -> dict[str, object]:
    """The message's properties with its lineage kept only if the orchestrator itself scheduled this very
    message, with this very body, as a re-send (its record, written before the re-send, says the same).
    Anyone can set the properties: trusted blindly, they would let a message pass as another request's
    re-send (and take its job id with another body) or skip its retries."""
    out = dict(properties)
    if not claims_lineage(message_id, properties):
        return out
    proven = record is not None and record.get("messageId") == message_id and record.get("bodySha256") == digest \
        and all(str(record.get(key)) == str(properties.get(key)) for key in (ORIGINAL_ID, ATTEMPTS, REASON))
    if not proven:
        for key in (ORIGINAL_ID, ATTEMPTS, REASON):
            out.pop(key, None)
    return out


def attempts_so_far(properties: Mapping[str, object]) -> int:
    try:
        return max(int(properties.get(ATTEMPTS, 0)), 0)
    except (TypeError, ValueError):
        return 0


def resend(message_id: str, properties: Mapping[str, object], now: datetime, kind: str = QUOTA,
           nonce: str = "") -> Resend | None:
    """When to send the request again, or None when this kind of retry has run out of attempts.

    nonce: a random part of the re-send's id, so no sender can take that id first (duplicate detection
    would then drop the orchestrator's re-send)."""
    policy = POLICIES[kind]
    attempt = attempts_so_far(properties) + 1
    if policy.attempts is not None and attempt > policy.attempts:
        return None
    original = lineage(message_id, properties)
    return Resend(message_id=f"{original}~retry{attempt}" + (f"-{nonce}" if nonce else ""),
                  properties={ORIGINAL_ID: original, ATTEMPTS: attempt, REASON: kind},
                  at=now + policy.delay(attempt), attempt=attempt, reason=kind)
