"""Queue semantics of Service Bus, independent of AMQP: enqueue, lock, settle, expire.

Time comes in as milliseconds from the caller's clock so the rules can be reasoned about (and
driven) without a network. Every change is written to the store before the method returns.
"""

from __future__ import annotations

import heapq
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from . import codec
from .config import QueueConfig, TopicConfig
from .filters import TRUE_RULE, EvaluationError, message_view
from .log import log
from .store import ACTIVE, DEFERRED, SCHEDULED, Record, Store

MAX_DELIVERY_REASON = "MaxDeliveryCountExceeded"
EXPIRED_REASON = "TTLExpiredException"
DEAD_LETTER_QUEUE = "$deadletterqueue"


class EntityNotFound(LookupError):
    pass


class LockLost(LookupError):
    """The lock token is unknown or its lock has expired."""


class MessageNotFound(LookupError):
    pass


@dataclass(slots=True, eq=False)
class Lock:
    token: uuid.UUID
    record: Record
    until_ms: int
    live: bool = True


class SubQueue:
    """The active part of a queue or its dead-letter queue: records plus a FIFO of those ready to deliver."""

    def __init__(self, queue: Queue, dead_letter: bool) -> None:
        self.queue = queue
        self.dead_letter = dead_letter
        self.records: dict[int, Record] = {}
        self._ready: list[int] = []
        self._ready_set: set[int] = set()
        self.consumers: list = []  # proton sender links, managed by the broker

    @property
    def path(self) -> str:
        return f"{self.queue.config.name}/$DeadLetterQueue" if self.dead_letter else self.queue.config.name

    def make_ready(self, record: Record) -> None:
        if record.seq not in self._ready_set:
            self._ready_set.add(record.seq)
            heapq.heappush(self._ready, record.seq)

    def pop_ready(self) -> Record | None:
        while self._ready:
            seq = heapq.heappop(self._ready)
            self._ready_set.discard(seq)
            record = self.records.get(seq)
            if record is not None and record.state == ACTIVE and record.lock is None:
                return record
        return None

    def has_ready(self) -> bool:
        return bool(self._ready_set)

    def discard(self, record: Record) -> None:
        self.records.pop(record.seq, None)
        self._ready_set.discard(record.seq)  # the heap entry is skipped lazily


class Queue:
    def __init__(self, config: QueueConfig) -> None:
        self.config = config
        self.key = config.name.lower()
        self.main = SubQueue(self, dead_letter=False)
        self.dlq = SubQueue(self, dead_letter=True)
        self.seen_ids: dict[str, int] = {}  # message id -> first seen, oldest first
        self.scheduled: list[tuple[int, int]] = []  # (visible_ms, seq)
        self.expiring: list[tuple[int, int]] = []  # (expires_ms, seq)

    def sub(self, dead_letter: bool) -> SubQueue:
        return self.dlq if dead_letter else self.main


def _app_props_with_reason(app_raw: bytes, reason: str | None, description: str | None) -> bytes:
    extra = {}
    if reason is not None:
        extra["DeadLetterReason"] = reason
    if description is not None:
        extra["DeadLetterErrorDescription"] = description
    return codec.with_application_properties(app_raw, extra) if extra else app_raw


class Topic:
    """Where senders publish: every message goes to each subscription whose rules select it, under one
    sequence number (the topic's), as a copy of its own that the subscription settles independently."""

    dead_letter = False  # a topic has no dead-letter queue of its own

    def __init__(self, config: TopicConfig, subscriptions: list[Queue]) -> None:
        self.config = config
        self.key = config.name.lower()
        self.subscriptions = subscriptions
        self.seen_ids: dict[str, int] = {}

    @property
    def path(self) -> str:
        return self.config.name


class Namespace:
    """All queues, topics and subscriptions, their messages and the outstanding locks."""

    def __init__(self, configs: Iterable[QueueConfig], store: Store, clock_ms: Callable[[], int],
                 topics: Iterable[TopicConfig] = ()) -> None:
        self.store = store
        self.clock_ms = clock_ms
        self.queues = {q.name.lower(): Queue(q) for q in configs}
        self.topics: dict[str, Topic] = {}
        for topic in topics:
            subs = [Queue(sub) for sub in topic.subscriptions]
            self.queues.update({sub.key: sub for sub in subs})  # a subscription is a queue fed by its topic
            self.topics[topic.name.lower()] = Topic(topic, subs)
        self.locks: dict[uuid.UUID, Lock] = {}
        self._lock_expiry: list[tuple[int, uuid.UUID]] = []
        self.dirty: set[SubQueue] = set()  # sub-queues with newly ready messages, for the broker to dispatch
        records, seen, self.next_seq = store.load()
        now = clock_ms()
        for record in records:
            queue = self.queues.get(record.queue)
            if queue is None:
                continue  # a queue dropped from the configuration keeps its rows but is not served
            self._place(queue, record, now)
        for name, ids in seen.items():
            entity = self.queues.get(name) or self.topics.get(name)
            if entity is not None:
                entity.seen_ids.update(ids)

    # -- lookup -------------------------------------------------------------------------------

    def queue(self, name: str) -> Queue:
        queue = self.queues.get(name.lower())
        if queue is None:
            raise EntityNotFound(name)
        return queue

    def resolve(self, path: str) -> SubQueue | Topic:
        """'jobs', 'jobs/$DeadLetterQueue', 'events' (a topic), 'events/Subscriptions/audit' and
        'events/Subscriptions/audit/$DeadLetterQueue' to what they name."""
        parts = path.split("/")
        if len(parts) >= 3 and parts[1].lower() == "subscriptions":
            name, rest = "/".join(parts[:3]), parts[3:]
        else:
            name, rest = parts[0], parts[1:]
        if not rest and name.lower() in self.topics:
            return self.topics[name.lower()]
        queue = self.queue(name)
        if not rest:
            return queue.main
        if len(rest) == 1 and rest[0].lower() == DEAD_LETTER_QUEUE:
            return queue.dlq
        raise EntityNotFound(path)

    # -- enqueue ------------------------------------------------------------------------------

    def enqueue(self, target: Queue | Topic, messages: list[codec.Parsed]) -> list[int]:
        """Accept messages for a queue, or publish them on a topic; duplicates inside the detection window
        are acknowledged and dropped. Returns the sequence numbers given (one per message kept)."""
        now = self.clock_ms()
        new: list[tuple[Queue, Record]] = []
        new_ids: list[tuple[str, int]] = []
        seqs: list[int] = []
        config = target.config
        if config.duplicate_detection:
            self._trim_seen(target, now)
        for parsed in messages:
            message_id = None if parsed.message_id is None else str(parsed.message_id)
            if config.duplicate_detection and message_id is not None:
                if message_id in target.seen_ids:
                    continue
                target.seen_ids[message_id] = now
                new_ids.append((message_id, now))
            seq = self.next_seq
            self.next_seq += 1
            seqs.append(seq)
            if isinstance(target, Topic):
                view = _filter_view(parsed)
                for sub in target.subscriptions:
                    if _selects(target, sub, view):
                        new.append((sub, self._record(sub, seq, parsed, now, config.default_ttl_s)))
            else:
                new.append((target, self._record(target, seq, parsed, now)))
        if new:
            self.store.add([record for _, record in new], self.next_seq)
        elif seqs:
            self.store.add([], self.next_seq)  # a topic message no subscription took still used its number
        if new_ids:
            self.store.remember_ids(target.key, new_ids)
        for queue, record in new:
            self._place(queue, record, now)
        return seqs

    def _record(self, queue: Queue, seq: int, parsed: codec.Parsed, now: int,
                topic_ttl_s: float | None = None) -> Record:
        annotations = {k: v for k, v in parsed.annotations.items() if str(k) not in _BROKER_ANNOTATIONS}
        scheduled_ms = annotations.get(_SCHEDULED_KEY)
        visible = max(now, int(scheduled_ms)) if scheduled_ms is not None else now
        ttl_candidates = [t for t in (parsed.ttl_ms, _seconds_ms(queue.config.default_ttl_s),
                                      _seconds_ms(topic_ttl_s)) if t]
        ttl = min(ttl_candidates) if ttl_candidates else None
        message_id = None if parsed.message_id is None else str(parsed.message_id)
        return Record(
            seq=seq, queue=queue.key, dead_letter=False,
            state=SCHEDULED if visible > now else ACTIVE,
            enqueued_ms=now, visible_ms=visible, expires_ms=(visible + ttl) if ttl else 0,
            delivery_count=0, message_id=message_id, durable=parsed.durable, priority=parsed.priority,
            ttl_ms=ttl, annotations=codec.encode_value(annotations) if annotations else _EMPTY_MAP,
            properties=parsed.properties_raw, app_properties=parsed.app_raw, body=parsed.body_raw,
        )

    def _place(self, queue: Queue, record: Record, now: int) -> None:
        sub = queue.sub(record.dead_letter)
        sub.records[record.seq] = record
        if record.state == SCHEDULED:
            heapq.heappush(queue.scheduled, (record.visible_ms, record.seq))
        elif record.state == ACTIVE:
            sub.make_ready(record)
            self.dirty.add(sub)
        if record.expires_ms and not record.dead_letter:
            heapq.heappush(queue.expiring, (record.expires_ms, record.seq))

    def _trim_seen(self, queue: Queue, now: int) -> None:
        horizon = now - int(queue.config.duplicate_window_s * 1000)
        stale = []
        for mid, ms in queue.seen_ids.items():  # oldest first, so the stale ones are a prefix
            if ms >= horizon:
                break
            stale.append(mid)
        if stale:
            for mid in stale:
                del queue.seen_ids[mid]
            self.store.forget_ids_before(queue.key, horizon)

    def cancel_scheduled(self, target: Queue | Topic, seqs: Iterable[int]) -> None:
        seqs = [int(seq) for seq in seqs]
        for queue in target.subscriptions if isinstance(target, Topic) else [target]:
            gone = []
            for seq in seqs:
                record = queue.main.records.get(seq)
                if record is not None and record.state == SCHEDULED:
                    queue.main.discard(record)
                    gone.append(record.seq)
            if gone:
                self.store.remove(gone, queue=queue.key)

    # -- delivery -----------------------------------------------------------------------------

    def take(self, sub: SubQueue) -> Record | None:
        """Next deliverable message, expiring any that outlived their TTL on the way."""
        now = self.clock_ms()
        while True:
            record = sub.pop_ready()
            if record is None:
                return None
            if record.expires_ms and record.expires_ms <= now and not record.dead_letter:
                self._expire(sub.queue, record)
                continue
            return record

    def lock(self, record: Record) -> Lock:
        queue = self.queues[record.queue]
        until = self.clock_ms() + int(queue.config.lock_duration_s * 1000)
        lock = Lock(token=uuid.uuid4(), record=record, until_ms=until)
        record.lock = lock
        self.locks[lock.token] = lock
        heapq.heappush(self._lock_expiry, (until, lock.token))
        return lock

    def delete_delivered(self, record: Record) -> None:
        """RECEIVE_AND_DELETE: gone as soon as it is sent."""
        self.queues[record.queue].sub(record.dead_letter).discard(record)
        self.store.remove([record.seq], queue=record.queue)

    def is_live(self, lock: Lock) -> bool:
        return lock.live and lock.until_ms > self.clock_ms()

    def live_lock(self, token: uuid.UUID) -> Lock:
        lock = self.locks.get(token)
        if lock is None or not self.is_live(lock):
            raise LockLost(str(token))
        return lock

    def _unlock(self, lock: Lock) -> Record:
        lock.live = False
        self.locks.pop(lock.token, None)
        lock.record.lock = None
        return lock.record

    def complete(self, lock: Lock) -> None:
        record = self._unlock(lock)
        self.queues[record.queue].sub(record.dead_letter).discard(record)
        # A completion lost in a crash only means the message is delivered again (at-least-once),
        # so it may share a group commit instead of costing one of its own.
        self.store.remove([record.seq], grouped=True, queue=record.queue)

    def release(self, lock: Lock) -> None:
        """The client never looked at it (prefetch given back): no delivery attempt is counted."""
        record = self._unlock(lock)
        self._back(record)

    def abandon(self, lock: Lock) -> None:
        record = self._unlock(lock)
        self._failed_attempt(record)

    def defer(self, lock: Lock) -> None:
        record = self._unlock(lock)
        record.state = DEFERRED
        self.store.update(record)

    def dead_letter(self, lock: Lock, reason: str | None, description: str | None) -> None:
        record = self._unlock(lock)
        self._to_dead_letter(record, reason, description)

    def modify_properties(self, lock: Lock, changes: dict) -> None:
        """An abandon's or defer's properties-to-modify, merged into the application properties as sent."""
        if changes:
            record = lock.record
            record.app_properties = codec.with_application_properties(record.app_properties, changes)
            self.store.update(record)

    def renew(self, token: uuid.UUID) -> int:
        lock = self.live_lock(token)
        queue = self.queues[lock.record.queue]
        lock.until_ms = self.clock_ms() + int(queue.config.lock_duration_s * 1000)
        heapq.heappush(self._lock_expiry, (lock.until_ms, lock.token))
        return lock.until_ms

    def _back(self, record: Record) -> None:
        sub = self.queues[record.queue].sub(record.dead_letter)
        if record.seq in sub.records and record.state == ACTIVE:
            sub.make_ready(record)
            self.dirty.add(sub)

    def _failed_attempt(self, record: Record) -> None:
        queue = self.queues[record.queue]
        record.delivery_count += 1
        if not record.dead_letter and record.delivery_count >= queue.config.max_delivery_count:
            self._to_dead_letter(
                record,
                MAX_DELIVERY_REASON,
                f"Message could not be consumed after {queue.config.max_delivery_count} delivery attempts.",
            )
            return
        self.store.update(record)
        self._back(record)

    def _to_dead_letter(self, record: Record, reason: str | None, description: str | None) -> None:
        queue = self.queues[record.queue]
        queue.sub(record.dead_letter).discard(record)
        if not record.dead_letter:
            record.dead_letter_source = queue.config.name
        record.dead_letter = True
        record.state = ACTIVE
        record.expires_ms = 0
        record.app_properties = _app_props_with_reason(record.app_properties, reason, description)
        self.store.update(record)
        queue.dlq.records[record.seq] = record
        queue.dlq.make_ready(record)
        self.dirty.add(queue.dlq)

    def _expire(self, queue: Queue, record: Record) -> None:
        if queue.config.dead_letter_on_expiry:
            self._to_dead_letter(record, EXPIRED_REASON, "The message expired and was dead lettered.")
        else:
            queue.main.discard(record)
            self.store.remove([record.seq], queue=record.queue)

    # -- management ---------------------------------------------------------------------------

    def peek(self, sub: SubQueue, from_seq: int, count: int) -> list[Record]:
        seqs = sorted(s for s in sub.records if s >= from_seq)
        return [sub.records[s] for s in seqs[:count]]

    def deferred(self, sub: SubQueue, seqs: Iterable[int]) -> list[Record]:
        found = []
        for seq in seqs:
            record = sub.records.get(int(seq))
            if record is None or record.state != DEFERRED or record.lock is not None:
                raise MessageNotFound(f"deferred message with sequence number {seq} not found or locked")
            found.append(record)
        return found

    # -- time ---------------------------------------------------------------------------------

    def tick(self) -> None:
        """Expire locks, bring scheduled messages in and move messages past their TTL."""
        now = self.clock_ms()
        while self._lock_expiry and self._lock_expiry[0][0] <= now:
            _, token = heapq.heappop(self._lock_expiry)
            lock = self.locks.get(token)
            if lock is not None and lock.live and lock.until_ms <= now:
                self._failed_attempt(self._unlock(lock))
        for queue in self.queues.values():
            while queue.scheduled and queue.scheduled[0][0] <= now:
                _, seq = heapq.heappop(queue.scheduled)
                record = queue.main.records.get(seq)
                if record is not None and record.state == SCHEDULED:
                    record.state = ACTIVE
                    self.store.update(record)
                    self._back(record)
            while queue.expiring and queue.expiring[0][0] <= now:
                _, seq = heapq.heappop(queue.expiring)
                record = queue.main.records.get(seq)
                if record is None or record.dead_letter or not record.expires_ms or record.expires_ms > now:
                    continue
                if record.lock is not None:
                    # Service Bus does not expire a message under lock; look again once the lock is over.
                    heapq.heappush(queue.expiring, (record.lock.until_ms + 1, seq))
                    continue
                if record.state == SCHEDULED:
                    continue
                self._expire(queue, record)


_SCHEDULED_KEY = "x-opt-scheduled-enqueue-time"
_EMPTY_MAP = codec.encode_value({})
_BROKER_ANNOTATIONS = frozenset(
    {
        "x-opt-sequence-number",
        "x-opt-enqueued-time",
        "x-opt-locked-until",
        "x-opt-lock-token",
        "x-opt-message-state",
        "x-opt-deadletter-source",
        "x-opt-enqueue-sequence-number",
    }
)


_PROPERTY_FIELDS = ("message_id", "user_id", "to", "subject", "reply_to", "correlation_id", "content_type",
                    "content_encoding", "absolute_expiry_time", "creation_time", "group_id", "group_sequence",
                    "reply_to_group_id")


def _filter_view(parsed: codec.Parsed) -> dict:
    """The message as subscription rules read it (decoded once, for all of a topic's subscriptions)."""
    fields = list(codec.decode_value(parsed.properties_raw) or []) if parsed.properties_raw else []
    properties = dict(zip(_PROPERTY_FIELDS, fields, strict=False))
    application = codec.decode_value(parsed.app_raw) if parsed.app_raw else {}
    return message_view(properties, application or {})


def _selects(topic: Topic, subscription: Queue, view: dict) -> bool:
    for rule in subscription.config.rules or (TRUE_RULE,):
        try:
            if rule.matches(view):
                return True
        except EvaluationError as exc:
            # Service Bus can dead-letter such messages (deadLetteringOnFilterEvaluationExceptions, refused in
            # the configuration); here the rule does not match, and the log says why.
            log("filter_failed", "warning", topic=topic.path, subscription=subscription.config.name,
                rule=rule.name, error=str(exc))
    return False


def _seconds_ms(seconds: float | None) -> int | None:
    return int(seconds * 1000) if seconds else None
