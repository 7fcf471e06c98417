"""The $management node of a queue: peek, schedule, renew-lock, deferred receive, settle by token."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from proton import UNDESCRIBED, Array, Data, symbol

from . import codec
from .queues import EntityNotFound, LockLost, MessageNotFound, Namespace, SubQueue, Topic
from .render import render

VENDOR = "com.microsoft:"
LOCK_LOST = "com.microsoft:message-lock-lost"
MESSAGE_NOT_FOUND = "com.microsoft:message-not-found"
ARGUMENT_ERROR = "com.microsoft:argument-error"
NOT_FOUND = "amqp:not-found"
NOT_IMPLEMENTED = "amqp:not-implemented"
NOT_ALLOWED = "amqp:not-allowed"
RECEIVE_AND_DELETE = 0
_TOPIC_OPERATIONS = {"schedule-message", "cancel-scheduled-message"}


@dataclass(slots=True)
class Reply:
    status: int
    description: str
    body: Any = field(default_factory=dict)
    condition: str | None = None

    def application_properties(self) -> dict:
        props: dict = {"statusCode": self.status, "statusDescription": self.description}
        if self.condition:
            props["errorCondition"] = symbol(self.condition)
        return props


class BadRequest(ValueError):
    pass


def _items(value: Any) -> list:
    """AMQP arrays arrive as proton Array objects, lists as lists."""
    if value is None:
        return []
    if isinstance(value, Array):
        return list(value.elements)
    if isinstance(value, list | tuple):
        return list(value)
    return [value]


def _require(body: Any, key: str) -> Any:
    if not isinstance(body, dict) or key not in body:
        raise BadRequest(f"request body lacks {key!r}")
    return body[key]


def _tokens(body: Any) -> list[uuid.UUID]:
    out = []
    for item in _items(_require(body, "lock-tokens")):
        try:
            out.append(item if isinstance(item, uuid.UUID) else uuid.UUID(str(item)))
        except ValueError as exc:
            raise BadRequest(f"not a lock token: {item!r}") from exc
    return out


class NotAllowed(ValueError):
    pass


def _no_session(body: Any) -> None:
    if isinstance(body, dict) and body.get("session-id") is not None:
        raise NotAllowed("the local emulator has no session-enabled queues; this request names a session")


class Management:
    def __init__(self, namespace: Namespace) -> None:
        self.ns = namespace
        self._ops = {
            "renew-lock": self._renew_lock,
            "peek-message": self._peek,
            "schedule-message": self._schedule,
            "cancel-scheduled-message": self._cancel,
            "receive-by-sequence-number": self._receive_deferred,
            "update-disposition": self._update_disposition,
        }

    def handle(self, sub: SubQueue, operation: str, body: Any) -> Reply:
        name = operation[len(VENDOR):] if operation.startswith(VENDOR) else operation
        op = self._ops.get(name)
        if op is None:
            return Reply(501, f"The operation {operation!r} is not supported by the local emulator.", {}, NOT_IMPLEMENTED)
        if isinstance(sub, Topic) and name not in _TOPIC_OPERATIONS:
            return Reply(400, f"The operation {operation!r} is not supported on a topic: use one of its "
                         "subscriptions.", {}, NOT_ALLOWED)
        try:
            return op(sub, body)
        except LockLost as exc:
            return Reply(410, f"The lock supplied is invalid: it expired or the message was settled ({exc}).", {},
                         LOCK_LOST)
        except MessageNotFound as exc:
            return Reply(404, str(exc), {}, MESSAGE_NOT_FOUND)
        except EntityNotFound as exc:
            return Reply(404, f"The messaging entity {exc} could not be found.", {}, NOT_FOUND)
        except NotAllowed as exc:
            return Reply(400, str(exc), {}, NOT_ALLOWED)
        except (BadRequest, codec.DecodeError, TypeError, ValueError) as exc:
            return Reply(400, f"Bad request: {exc}", {}, ARGUMENT_ERROR)

    def _renew_lock(self, sub: SubQueue, body: Any) -> Reply:
        expirations = [self.ns.renew(token) for token in _tokens(body)]
        return Reply(200, "OK", {"expirations": Array(UNDESCRIBED, Data.TIMESTAMP, *expirations)})

    def _peek(self, sub: SubQueue, body: Any) -> Reply:
        _no_session(body)
        start = int(_require(body, "from-sequence-number"))
        count = int(_require(body, "message-count"))
        records = self.ns.peek(sub, start, max(count, 0))
        if not records:
            return Reply(204, "No messages to peek.", {})
        return Reply(200, "OK", {"messages": [{"message": render(r)} for r in records]})

    def _schedule(self, sub: SubQueue, body: Any) -> Reply:
        if sub.dead_letter:
            raise BadRequest("cannot schedule messages on a dead-letter queue")
        parsed = [codec.parse_message(_require(item, "message")) for item in _items(_require(body, "messages"))]
        for p in parsed:
            if p.size > MAX_MESSAGE_SIZE:
                raise BadRequest(f"message of {p.size} bytes is over the {MAX_MESSAGE_SIZE} byte limit")
        seqs = self.ns.enqueue(sub if isinstance(sub, Topic) else sub.queue, parsed)
        return Reply(200, "OK", {"sequence-numbers": Array(UNDESCRIBED, Data.LONG, *seqs)})

    def _cancel(self, sub: SubQueue, body: Any) -> Reply:
        self.ns.cancel_scheduled(sub if isinstance(sub, Topic) else sub.queue,
                                 [int(s) for s in _items(_require(body, "sequence-numbers"))])
        return Reply(200, "OK", {})

    def _receive_deferred(self, sub: SubQueue, body: Any) -> Reply:
        _no_session(body)
        seqs = [int(s) for s in _items(_require(body, "sequence-numbers"))]
        mode = int(body.get("receiver-settle-mode", 1))
        messages = []
        for record in self.ns.deferred(sub, seqs):
            if mode == RECEIVE_AND_DELETE:
                messages.append({"message": render(record)})
                self.ns.delete_delivered(record)
            else:
                lock = self.ns.lock(record)
                messages.append({"message": render(record, lock.until_ms), "lock-token": lock.token})
        return Reply(200, "OK", {"messages": messages})

    def _update_disposition(self, sub: SubQueue, body: Any) -> Reply:
        status = str(_require(body, "disposition-status"))
        locks = [self.ns.live_lock(token) for token in _tokens(body)]
        changes = body.get("properties-to-modify") or {}
        if not isinstance(changes, dict):
            raise BadRequest("properties-to-modify must be a map")
        for lock in locks:
            if changes and status in ("abandoned", "defered"):
                self.ns.modify_properties(lock, {str(k): v for k, v in changes.items()})
            if status == "completed":
                self.ns.complete(lock)
            elif status == "abandoned":
                self.ns.abandon(lock)
            elif status == "defered":
                self.ns.defer(lock)
            elif status == "suspended":
                self.ns.dead_letter(lock, body.get("deadletter-reason"), body.get("deadletter-description"))
            else:
                raise BadRequest(f"unknown disposition-status {status!r}")
        return Reply(200, "OK", {})


# Standard tier limit; the broker refuses larger messages on every path.
MAX_MESSAGE_SIZE = 256 * 1024
