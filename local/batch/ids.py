"""Batch ids are case-insensitive and case-preserving: a job "Job1" is found as "job1", and "JOB1" is taken.

"The ID is case-preserving and case-insensitive (that is, you may not have two IDs within an Account that
differ only by case)": https://learn.microsoft.com/rest/api/batchservice/job/add (the same for pools and tasks).
The objects keep the id as created; only the map's keys are folded, so a lookup stays one dict access.
"""

from __future__ import annotations

from typing import TypeVar

V = TypeVar("V")
_MISSING = object()


def fold(ident: str) -> str:
    # Ids are ASCII letters, digits, '-' and '_' only (wire.ID_RE), so lower() is the whole case rule.
    return ident.lower() if isinstance(ident, str) else ident


class IdMap(dict[str, V]):
    """A dict whose keys compare without case. Iterating gives the folded keys; use values() for the ids."""

    def __getitem__(self, key: str) -> V:
        return dict.__getitem__(self, fold(key))

    def __setitem__(self, key: str, value: V) -> None:
        dict.__setitem__(self, fold(key), value)

    def __delitem__(self, key: str) -> None:
        dict.__delitem__(self, fold(key))

    def __contains__(self, key: object) -> bool:
        return dict.__contains__(self, fold(key))

    def get(self, key: str, default=None):
        return dict.get(self, fold(key), default)

    def pop(self, key: str, default=_MISSING):
        if default is _MISSING:
            return dict.pop(self, fold(key))
        return dict.pop(self, fold(key), default)

    def setdefault(self, key: str, default=None):
        return dict.setdefault(self, fold(key), default)
