"""Times and durations as people read them, one format everywhere (the report page and the CLI).

Records keep ISO 8601 in UTC; what a user sees is `2026-12-01 23:28:05 UTC` (to the second, the zone
named) and durations in the largest units that matter (`1 h 02 min`, `3.4 s`, `120 ms`).
"""

from __future__ import annotations

from datetime import UTC, datetime


def parse_time(value: str | datetime | None) -> datetime | None:
    """A record's time (ISO 8601, `Z` or an offset) as an aware datetime; None if absent or unreadable.
    A time without a zone is taken as UTC, which is how every record is written."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        moment = value
    else:
        try:
            moment = datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
        except ValueError:
            return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def show_time(value: str | datetime | None) -> str:
    """`2026-12-01 23:28:05 UTC`; `-` when there is none; an unreadable value as it is."""
    moment = parse_time(value)
    if moment is None:
        return "-" if value in (None, "") else str(value)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def seconds_between(start: str | datetime | None, end: str | datetime | None) -> float | None:
    first, last = parse_time(start), parse_time(end)
    if first is None or last is None:
        return None
    return (last - first).total_seconds()


def show_duration(seconds: float | int | None) -> str:
    """Human units: `120 ms`, `3.4 s`, `42 s`, `5 min 07 s`, `1 h 02 min`, `3 d 04 h`; `-` for none."""
    if seconds is None:
        return "-"
    value = float(seconds)
    sign = "-" if value < 0 else ""
    value = abs(value)
    if value < 1:
        return f"{sign}{round(value * 1000)} ms"
    if value < 10:
        return f"{sign}{value:.1f} s"
    whole = round(value)
    if whole < 60:
        return f"{sign}{whole} s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{sign}{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{sign}{hours} h {minutes:02d} min"
    days, hours = divmod(hours, 24)
    return f"{sign}{days} d {hours:02d} h"
