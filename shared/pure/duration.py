"""Strict ISO 8601 durations (days and smaller) as used by the job request.

Years and months are refused: their length depends on the calendar, and a deadline must be exact.
"""

from __future__ import annotations

import re
from datetime import timedelta

_DURATION = re.compile(
    r"^P(?!$)(?:(?P<weeks>\d{1,6})W)?(?:(?P<days>\d{1,6})D)?"
    r"(?:T(?!$)(?:(?P<hours>\d{1,7})H)?(?:(?P<minutes>\d{1,9})M)?(?:(?P<seconds>\d{1,10}(?:\.\d{1,7})?)S)?)?$"
)

# Published in the JSON Schema so clients can check before sending.
DURATION_PATTERN = (
    r"^P(?!$)(\d{1,6}W)?(\d{1,6}D)?(T(?!$)(\d{1,7}H)?(\d{1,9}M)?(\d{1,10}(\.\d{1,7})?S)?)?$"
)

# Larger values overflow Batch's own "unlimited" (P10675199DT2H48M5.4775807S).
MAX_DURATION = timedelta(days=10_000_000)


def parse_duration(text: str) -> timedelta:
    """Parse e.g. 'PT15M', 'P1DT2H', 'PT0.5S', 'P2W'. Raises ValueError naming the rule.

    As strict as the published schema pattern: upper case, no surrounding spaces.
    """
    if not isinstance(text, str):
        raise ValueError("must be an ISO 8601 duration string such as 'PT1H'")
    m = _DURATION.fullmatch(text) if len(text) <= 64 else None
    if m is None:
        raise ValueError(
            f"{text[:40]!r} is not an ISO 8601 duration of the form PnW, PnDTnHnMnS (e.g. 'PT1H30M'); "
            "years and months are not allowed"
        )
    parts = {k: v for k, v in m.groupdict().items() if v is not None}
    try:
        value = timedelta(
            weeks=int(parts.get("weeks", 0)),
            days=int(parts.get("days", 0)),
            hours=int(parts.get("hours", 0)),
            minutes=int(parts.get("minutes", 0)),
            seconds=float(parts.get("seconds", 0)),
        )
    except OverflowError as exc:
        raise ValueError(f"{text[:40]!r} is too long a duration") from exc
    if value > MAX_DURATION:
        raise ValueError(f"{text[:40]!r} is longer than the maximum of {MAX_DURATION.days} days")
    return value


def format_duration(value: timedelta) -> str:
    """Canonical form, so equal durations serialise (and hash) the same."""
    if value < timedelta(0):
        raise ValueError("negative durations are not allowed")
    total_us = value // timedelta(microseconds=1)
    days, rest_us = divmod(total_us, 86_400_000_000)
    hours, rest_us = divmod(rest_us, 3_600_000_000)
    minutes, rest_us = divmod(rest_us, 60_000_000)
    seconds, micros = divmod(rest_us, 1_000_000)
    out = "P"
    if days:
        out += f"{days}D"
    time_part = ""
    if hours:
        time_part += f"{hours}H"
    if minutes:
        time_part += f"{minutes}M"
    if seconds or micros:
        frac = f".{micros:06d}".rstrip("0") if micros else ""
        time_part += f"{seconds}{frac}S"
    if time_part:
        out += "T" + time_part
    return out if out != "P" else "PT0S"
