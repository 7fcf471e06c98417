"""The one error the dev host raises for a problem the user fixes in settings or code, not a crash."""

from __future__ import annotations


class HostConfigError(RuntimeError):
    """Start-up refused: the message names the function, the binding and what to set or change."""
