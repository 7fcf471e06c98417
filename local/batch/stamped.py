"""The parts every model object shares: eTags, the state history, and a run's execution record."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from local.batch.wire import fmt_time, now

_etags = itertools.count(1)


def new_etag() -> str:
    return f"0x8DD{next(_etags):013X}"


@dataclass
class Stamped:
    """Common bookkeeping: creation time, last modified, eTag, state with its transition history."""

    state: str = "active"
    previous_state: str | None = None
    creation_time: datetime = field(default_factory=now)
    last_modified: datetime = field(default_factory=now)
    state_transition_time: datetime = field(default_factory=now)
    etag: str = field(default_factory=new_etag)

    def touch(self) -> None:
        self.last_modified = now()
        self.etag = new_etag()

    def set_state(self, state: str) -> None:
        if state != self.state:
            self.previous_state, self.state = self.state, state
            self.state_transition_time = now()
        self.touch()


@dataclass
class Execution:
    """What Batch reports in a task's executionInfo."""

    start_time: datetime | None = None
    end_time: datetime | None = None
    exit_code: int | None = None
    failure: dict | None = None
    retry_count: int = 0
    requeue_count: int = 0
    last_retry_time: datetime | None = None
    last_requeue_time: datetime | None = None

    @property
    def result(self) -> str | None:
        if self.end_time is None:
            return None
        return "failure" if self.failure else "success"

    def wire(self, include_retry: bool = True) -> dict:
        out: dict[str, Any] = {}
        if self.start_time:
            out["startTime"] = fmt_time(self.start_time)
        if self.end_time:
            out["endTime"] = fmt_time(self.end_time)
        if self.exit_code is not None:
            out["exitCode"] = self.exit_code
        if self.failure:
            out["failureInfo"] = self.failure
        if include_retry:
            out["retryCount"] = self.retry_count
            out["requeueCount"] = self.requeue_count
            if self.last_retry_time:
                out["lastRetryTime"] = fmt_time(self.last_retry_time)
            if self.last_requeue_time:
                out["lastRequeueTime"] = fmt_time(self.last_requeue_time)
        if self.result:
            out["result"] = self.result
        return out
