"""Where messages live between restarts: SQLite under a data folder, or nowhere (in-memory runs).

The broker keeps its working set in memory (see queues.py) and writes every change through to
the store. Changes made while handling one batch of network input share one SQLite transaction,
which the server commits (flush) before it writes any reply to a socket, so a restart loads
exactly what was acknowledged.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

ACTIVE, DEFERRED, SCHEDULED = 0, 1, 2
# Completions committed together at most this long after the first of them (see SqliteStore.flush).
GROUP_COMMIT_S = 0.05


@dataclass(slots=True, eq=False)
class Record:
    """One message as stored. Sections are kept encoded, exactly as the sender wrote them."""

    seq: int
    queue: str
    dead_letter: bool
    state: int
    enqueued_ms: int
    visible_ms: int
    expires_ms: int  # 0: never
    delivery_count: int
    message_id: str | None
    durable: bool
    priority: int
    ttl_ms: int | None
    annotations: bytes  # encoded map of the sender's message annotations
    properties: bytes
    app_properties: bytes
    body: bytes
    dead_letter_source: str | None = None
    lock: object | None = None  # runtime only: the current queues.Lock


class Store(Protocol):
    def load(self) -> tuple[list[Record], dict[str, dict[str, int]], int]:
        """Records, duplicate-detection history per queue, and the next sequence number."""

    def add(self, records: list[Record], next_seq: int) -> None: ...

    def update(self, record: Record) -> None: ...

    def remove(self, seqs: list[int], grouped: bool = False, queue: str | None = None) -> None:
        """grouped: a completion, whose commit may wait for the next group commit (see flush). queue: only
        that queue's (or subscription's) copies; a topic's subscriptions share sequence numbers."""

    def remember_ids(self, queue: str, ids: list[tuple[str, int]]) -> None: ...

    def forget_ids_before(self, queue: str, ms: int) -> None: ...

    def flush(self, force: bool = False) -> None:
        """Make changes durable; called before any acknowledgement leaves the broker."""

    def close(self) -> None: ...


class MemoryStore:
    """For tests and throwaway runs: the in-memory working set is all there is."""

    location = ":memory:"

    def load(self) -> tuple[list[Record], dict[str, dict[str, int]], int]:
        return [], {}, 1

    def add(self, records: list[Record], next_seq: int) -> None:
        pass

    def update(self, record: Record) -> None:
        pass

    def remove(self, seqs: list[int], grouped: bool = False, queue: str | None = None) -> None:
        pass

    def remember_ids(self, queue: str, ids: list[tuple[str, int]]) -> None:
        pass

    def forget_ids_before(self, queue: str, ms: int) -> None:
        pass

    def flush(self, force: bool = False) -> None:
        pass

    def close(self) -> None:
        pass


_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER NOT NULL, queue TEXT NOT NULL, dead_letter INTEGER NOT NULL, state INTEGER NOT NULL,
    enqueued_ms INTEGER NOT NULL, visible_ms INTEGER NOT NULL, expires_ms INTEGER NOT NULL,
    delivery_count INTEGER NOT NULL, message_id TEXT, durable INTEGER NOT NULL, priority INTEGER NOT NULL,
    ttl_ms INTEGER, annotations BLOB NOT NULL, properties BLOB NOT NULL, app_properties BLOB NOT NULL,
    body BLOB NOT NULL, dead_letter_source TEXT, PRIMARY KEY (queue, seq));
CREATE TABLE IF NOT EXISTS seen_ids (
    queue TEXT NOT NULL, message_id TEXT NOT NULL, seen_ms INTEGER NOT NULL, PRIMARY KEY (queue, message_id));
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""
_COLUMNS = (
    "seq, queue, dead_letter, state, enqueued_ms, visible_ms, expires_ms, delivery_count, message_id, "
    "durable, priority, ttl_ms, annotations, properties, app_properties, body, dead_letter_source"
)


class SqliteStore:
    """One SQLite file. Calls join an open transaction; flush() commits it (before the broker replies)."""

    def __init__(self, data_dir: str | Path, clock: Callable[[], float] = time.monotonic) -> None:
        """clock: seconds, only ever compared with itself (the group-commit window)."""
        path = Path(data_dir)
        path.mkdir(parents=True, exist_ok=True)
        self.location = str(path / "servicebus.sqlite3")
        self._db = sqlite3.connect(self.location, isolation_level=None)
        # WAL without fsync per commit: a killed broker loses nothing it acknowledged, only an OS crash could.
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._migrate()
        self._db.executescript(_SCHEMA)
        self._in_tx = False
        self._must_commit = False  # the open transaction holds a change that is about to be acknowledged
        self._clock = clock
        self._tx_started = 0.0

    def _migrate(self) -> None:
        """Before topics, a message was keyed by its sequence number alone; a topic's subscriptions now hold
        copies under the topic's one number, so the key is (queue, seq). Old files are rebuilt once."""
        columns = self._db.execute("PRAGMA table_info(messages)").fetchall()
        key = [c[1] for c in sorted(columns, key=lambda c: c[5]) if c[5]]
        if not columns or key == ["queue", "seq"]:
            return
        self._db.execute("BEGIN")
        self._db.execute("ALTER TABLE messages RENAME TO messages_before_topics")
        self._db.execute(_SCHEMA.split(";")[0])  # the messages table, as it is now
        self._db.execute(f"INSERT INTO messages ({_COLUMNS}) SELECT {_COLUMNS} FROM messages_before_topics")
        self._db.execute("DROP TABLE messages_before_topics")
        self._db.execute("COMMIT")

    def _begin(self, grouped: bool = False) -> None:
        if not self._in_tx:
            self._db.execute("BEGIN")
            self._in_tx = True
            self._tx_started = self._clock()
        if not grouped:
            self._must_commit = True

    def flush(self, force: bool = False) -> None:
        """Commit before replies go out. A transaction holding only completions may stay open for up
        to GROUP_COMMIT_S to share one commit: a crash in that window brings those messages back
        (delivered again, at-least-once), it never loses one."""
        if not self._in_tx:
            return
        if not (force or self._must_commit) and self._clock() - self._tx_started < GROUP_COMMIT_S:
            return
        self._in_tx = self._must_commit = False
        self._db.execute("COMMIT")

    def load(self) -> tuple[list[Record], dict[str, dict[str, int]], int]:
        rows = self._db.execute(f"SELECT {_COLUMNS} FROM messages ORDER BY seq").fetchall()
        records = [
            Record(
                seq=r[0], queue=r[1], dead_letter=bool(r[2]), state=r[3], enqueued_ms=r[4], visible_ms=r[5],
                expires_ms=r[6], delivery_count=r[7], message_id=r[8], durable=bool(r[9]), priority=r[10],
                ttl_ms=r[11], annotations=bytes(r[12]), properties=bytes(r[13]), app_properties=bytes(r[14]),
                body=bytes(r[15]), dead_letter_source=r[16],
            )
            for r in rows
        ]
        seen: dict[str, dict[str, int]] = {}
        for queue, message_id, ms in self._db.execute("SELECT queue, message_id, seen_ms FROM seen_ids ORDER BY seen_ms"):
            seen.setdefault(queue, {})[message_id] = ms
        row = self._db.execute("SELECT value FROM meta WHERE key = 'next_seq'").fetchone()
        next_seq = max(row[0] if row else 1, (records[-1].seq + 1) if records else 1)
        return records, seen, next_seq

    def add(self, records: list[Record], next_seq: int) -> None:
        self._begin()
        # A savepoint, so a failed insert leaves nothing of the refused send in the shared transaction.
        self._db.execute("SAVEPOINT add_records")
        try:
            self._db.executemany(
                f"INSERT INTO messages ({_COLUMNS}) VALUES ({', '.join('?' * 17)})",
                [
                    (
                        r.seq, r.queue, int(r.dead_letter), r.state, r.enqueued_ms, r.visible_ms, r.expires_ms,
                        r.delivery_count, r.message_id, int(r.durable), r.priority, r.ttl_ms, r.annotations,
                        r.properties, r.app_properties, r.body, r.dead_letter_source,
                    )
                    for r in records
                ],
            )
            self._db.execute(
                "INSERT INTO meta (key, value) VALUES ('next_seq', ?) ON CONFLICT(key) DO UPDATE SET value = ?",
                (next_seq, next_seq),
            )
        except BaseException:
            self._db.execute("ROLLBACK TO add_records")
            self._db.execute("RELEASE add_records")
            raise
        self._db.execute("RELEASE add_records")

    def update(self, record: Record) -> None:
        self._begin()
        self._db.execute(
            "UPDATE messages SET dead_letter = ?, state = ?, visible_ms = ?, expires_ms = ?, delivery_count = ?, "
            "app_properties = ?, dead_letter_source = ? WHERE queue = ? AND seq = ?",
            (
                int(record.dead_letter), record.state, record.visible_ms, record.expires_ms, record.delivery_count,
                record.app_properties, record.dead_letter_source, record.queue, record.seq,
            ),
        )

    def remove(self, seqs: list[int], grouped: bool = False, queue: str | None = None) -> None:
        self._begin(grouped)
        if queue is None:  # every copy of these sequence numbers
            self._db.executemany("DELETE FROM messages WHERE seq = ?", [(s,) for s in seqs])
        elif len(seqs) == 1:
            self._db.execute("DELETE FROM messages WHERE queue = ? AND seq = ?", (queue, seqs[0]))
        else:
            self._db.executemany("DELETE FROM messages WHERE queue = ? AND seq = ?", [(queue, s) for s in seqs])

    def remember_ids(self, queue: str, ids: list[tuple[str, int]]) -> None:
        self._begin()
        self._db.executemany(
            "INSERT OR REPLACE INTO seen_ids (queue, message_id, seen_ms) VALUES (?, ?, ?)",
            [(queue, message_id, ms) for message_id, ms in ids],
        )

    def forget_ids_before(self, queue: str, ms: int) -> None:
        self._begin()
        self._db.execute("DELETE FROM seen_ids WHERE queue = ? AND seen_ms < ?", (queue, ms))

    def close(self) -> None:
        self.flush(force=True)
        self._db.close()
