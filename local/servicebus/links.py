"""Link addresses as the SDK writes them, and what each kind of link is for."""

from __future__ import annotations

from urllib.parse import urlsplit

CBS = "$cbs"
SESSION_FILTER = "com.microsoft:session-filter"
MANAGEMENT_SUFFIX = "/$management"


def entity_path(address: str | None) -> str:
    """'amqps://127.0.0.1:5672/jobs/$DeadLetterQueue' -> 'jobs/$DeadLetterQueue'; '$cbs' stays '$cbs'."""
    if not address:
        return ""
    if "://" in address:
        address = urlsplit(address).path
    return address.strip("/")


def split_management(path: str) -> tuple[str, bool]:
    if path.lower().endswith(MANAGEMENT_SUFFIX):
        return path[: -len(MANAGEMENT_SUFFIX)], True
    return path, False
