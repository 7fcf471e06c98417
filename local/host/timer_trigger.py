"""Timer trigger: NCRONTAB (six fields, seconds first; five fields, seconds 0) or a TimeSpan, one at a time.

The schedule monitor mirrors the host's: status {Last, Next, LastUpdated} in
`azure-webjobs-hosts/timers/{hostId}/{functionId}/status`, and a missed occurrence found there on start-up
runs at once with IsPastDue.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

from croniter import croniter

from .errors import HostConfigError
from .invoker import Invoker
from .loader import FunctionSpec
from .payloads import iso, timer_request
from .settings import parse_timespan
from .storage import HostStorage

log = logging.getLogger("local.host.timer")

NEVER = datetime(1, 1, 1, tzinfo=UTC)  # the host's DateTime.MinValue for "has not run yet"


def utcnow() -> datetime:
    return datetime.now(UTC)


class Schedule:
    def __init__(self, expression: str, function: str, binding: str) -> None:
        self.expression = expression.strip()
        self.interval: timedelta | None = None
        self.with_seconds = True
        fields = self.expression.split()
        if len(fields) == 1 and ":" in self.expression:
            self.interval = parse_timespan(self.expression, f"function {function!r}, binding {binding!r} schedule")
            if self.interval <= timedelta(0):
                raise HostConfigError(f"function {function!r}, binding {binding!r}: schedule interval must be > 0")
            return
        # The timer extension's rule: exactly five fields is classic cron (minute first, so seconds are 0);
        # any other count is read as NCRONTAB with seconds first. croniter reads a sixth field as seconds
        # only with second_at_beginning.
        self.with_seconds = len(fields) != 5
        if len(fields) not in (5, 6) or not croniter.is_valid(self.expression,
                                                                second_at_beginning=self.with_seconds):
            raise HostConfigError(
                f"function {function!r}, binding {binding!r}: schedule {expression!r} is not an NCRONTAB "
                "expression: six fields '{second} {minute} {hour} {day} {month} {day-of-week}' (e.g. "
                "'0 */5 * * * *' for every five minutes) or five without the seconds ('*/5 * * * *'), "
                "or a TimeSpan like '00:05:00'")

    def next_after(self, moment: datetime) -> datetime:
        if self.interval is not None:
            return moment + self.interval
        return croniter(self.expression, moment, second_at_beginning=self.with_seconds).get_next(datetime)

    def monitored_by_default(self) -> bool:
        # The docs: useMonitor defaults to true only when occurrences are at least a minute apart.
        first = self.next_after(utcnow())
        return self.next_after(first) - first >= timedelta(minutes=1)


class TimerListener:
    def __init__(self, spec: FunctionSpec, invoker: Invoker, storage: HostStorage, host_id: str) -> None:
        self.spec = spec
        self.invoker = invoker
        self.storage = storage
        self.schedule = Schedule(spec.trigger["schedule"], spec.name, spec.trigger["name"])
        use_monitor = spec.trigger.get("useMonitor")
        self.use_monitor = self.schedule.monitored_by_default() if use_monitor is None else bool(use_monitor)
        self.run_on_startup = bool(spec.trigger.get("runOnStartup"))
        self.status_path = f"timers/{host_id}/{spec.function_id}/status"
        self.status: dict | None = None
        self.running: asyncio.Task | None = None
        self._stopping = asyncio.Event()
        self._loop_task: asyncio.Task | None = None

    async def start(self) -> None:
        first: tuple[bool, datetime] | None = None  # (past_due, occurrence) to run before the schedule
        now = utcnow()
        if self.use_monitor:
            self.status = await self.storage.read_json(self.status_path)
            due = self._past_due(now)
            if due is not None:
                first = (True, due)
            elif self.status is None:
                self.status = {"Last": iso(NEVER), "Next": iso(self.schedule.next_after(now)),
                               "LastUpdated": iso(now)}
                await self.storage.write_json(self.status_path, self.status)
        if first is None and self.run_on_startup:
            first = (False, now)
        self._loop_task = asyncio.create_task(self._run(first), name=f"timer:{self.spec.name}")
        log.info("scheduled", extra={"function": self.spec.name, "schedule": self.schedule.expression,
                                     "next": iso(self.schedule.next_after(now)), "use_monitor": self.use_monitor,
                                     "past_due": first is not None and first[0]})

    def _past_due(self, now: datetime) -> datetime | None:
        if not self.status:
            return None
        try:
            datetime.fromisoformat(self.status["Next"])  # only checked: an unreadable status is ignored
            last = datetime.fromisoformat(self.status["Last"])
            updated = datetime.fromisoformat(self.status["LastUpdated"])
        except (KeyError, TypeError, ValueError):
            return None  # unreadable status: start afresh, as the host does
        # The recorded Next is not trusted: if the schedule changed since, the host goes by the new one.
        due = self.schedule.next_after(updated if last <= NEVER else last)
        return due if now > due else None

    async def _run(self, first: tuple[bool, datetime] | None) -> None:
        if first is not None:
            await self._invoke(*first)
        while not self._stopping.is_set():
            # Computed after the previous run finished: a run that overruns skips occurrences rather than
            # overlapping the next one (one instance at a time).
            occurrence = self.schedule.next_after(utcnow())
            delay = (occurrence - utcnow()).total_seconds()
            try:
                await asyncio.wait_for(self._stopping.wait(), max(delay, 0))
                return
            except TimeoutError:
                pass
            await self._invoke(False, occurrence)

    async def _invoke(self, past_due: bool, occurrence: datetime) -> None:
        request = timer_request(past_due, self.status if self.use_monitor else None)
        reason = "Reason='Timer fired at " + iso(utcnow()) + "'" + (" (past due)" if past_due else "")
        self.running = asyncio.current_task()
        try:
            await self.invoker.invoke(self.spec, request, reason, past_due=past_due)
        except Exception:
            pass  # logged by the invoker; a timer just waits for its next occurrence
        finally:
            self.running = None
        if self.use_monitor:
            now = utcnow()
            self.status = {"Last": iso(occurrence), "Next": iso(self.schedule.next_after(now)), "LastUpdated": iso(now)}
            try:
                await self.storage.write_json(self.status_path, self.status)
            except Exception as exc:
                log.warning("schedule status not saved", extra={"function": self.spec.name, "error": repr(exc)})

    async def stop_receiving(self) -> None:
        self._stopping.set()

    async def drain(self, timeout: float) -> int:
        if self._loop_task:
            try:
                await asyncio.wait_for(asyncio.shield(self._loop_task), max(timeout, 0))
            except TimeoutError:
                return 1
        return 0

    async def close(self) -> None:
        if self._loop_task and not self._loop_task.done():
            self._loop_task.cancel()
            await asyncio.gather(self._loop_task, return_exceptions=True)
