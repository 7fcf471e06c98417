"""The subset of OData $filter and $select that Batch list operations accept.

Grammar: expr := and_expr ('or' and_expr)*; and_expr := atom ('and' atom)*;
atom := '(' expr ')' | 'not' atom | startswith(prop, 'text') | prop op literal.
Property names are case-sensitive, string values compare case-insensitively, as Batch does.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

from local.batch.errors import invalid_query

Predicate = Callable[[dict], bool]
_TOKEN = re.compile(
    r"\s*(?:(?P<lp>\()|(?P<rp>\))|(?P<comma>,)"
    r"|(?P<dt>DateTime'[^']*')|(?P<str>'(?:[^']|'')*')"
    r"|(?P<num>-?\d+(?:\.\d+)?)|(?P<word>[A-Za-z_][A-Za-z0-9_/]*))"
)
_OPS = {"eq", "ne", "gt", "ge", "lt", "le"}


def _tokens(text: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    text = text.strip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if not match or match.end() == pos:
            raise invalid_query("$filter", text, f"unexpected text at position {pos}: {text[pos:pos + 20]!r}")
        pos = match.end()
        kind = match.lastgroup
        out.append((kind, match.group(kind)))
    return out


def _get(item: dict, path: str) -> Any:
    value: Any = item
    for part in path.split("/"):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _literal(kind: str, text: str) -> Any:
    if kind == "str":
        return text[1:-1].replace("''", "'")
    if kind == "dt":
        try:
            return _parse_time(text[9:-1])
        except ValueError as exc:
            raise invalid_query("$filter", text, "DateTime literal is not ISO 8601") from exc
    if kind == "num":
        return float(text) if "." in text else int(text)
    if kind == "word" and text in ("true", "false"):
        return text == "true"
    if kind == "word" and text == "null":
        return None
    raise invalid_query("$filter", text, "expected a literal value")


def _compare(actual: Any, op: str, expected: Any) -> bool:
    if isinstance(expected, datetime):
        if not isinstance(actual, str):
            return op == "ne"
        actual = _parse_time(actual)
    elif isinstance(expected, str):
        if actual is None:
            return op == "ne"
        actual, expected = str(actual).lower(), expected.lower()
    if op == "eq":
        return actual == expected
    if op == "ne":
        return actual != expected
    if actual is None or expected is None:
        return False
    try:
        return {"gt": actual > expected, "ge": actual >= expected, "lt": actual < expected,
                "le": actual <= expected}[op]
    except TypeError:
        return False


class _Parser:
    def __init__(self, text: str, allowed: frozenset[str]):
        self.text = text
        self.allowed = allowed
        self.toks = _tokens(text)
        self.pos = 0

    def peek(self) -> tuple[str, str] | None:
        return self.toks[self.pos] if self.pos < len(self.toks) else None

    def take(self, kind: str | None = None, value: str | None = None) -> tuple[str, str]:
        tok = self.peek()
        if tok is None or (kind and tok[0] != kind) or (value and tok[1] != value):
            want = value or kind or "more input"
            raise invalid_query("$filter", self.text, f"expected {want} at token {self.pos + 1}")
        self.pos += 1
        return tok

    def prop(self, name: str) -> str:
        if name not in self.allowed:
            raise invalid_query("$filter", self.text, f"property {name!r} cannot be used in a filter here")
        return name

    def parse(self) -> Predicate:
        pred = self.expr()
        if self.peek() is not None:
            raise invalid_query("$filter", self.text, f"unexpected {self.peek()[1]!r}")
        return pred

    def expr(self) -> Predicate:
        parts = [self.and_expr()]
        while self.peek() == ("word", "or"):
            self.take()
            parts.append(self.and_expr())
        return parts[0] if len(parts) == 1 else (lambda item: any(p(item) for p in parts))

    def and_expr(self) -> Predicate:
        parts = [self.atom()]
        while self.peek() == ("word", "and"):
            self.take()
            parts.append(self.atom())
        return parts[0] if len(parts) == 1 else (lambda item: all(p(item) for p in parts))

    def atom(self) -> Predicate:
        tok = self.peek()
        if tok is None:
            raise invalid_query("$filter", self.text, "the filter ends too early")
        if tok[0] == "lp":
            self.take()
            inner = self.expr()
            self.take("rp")
            return inner
        if tok == ("word", "not"):
            self.take()
            inner = self.atom()
            return lambda item: not inner(item)
        if tok == ("word", "startswith"):
            self.take()
            self.take("lp")
            name = self.prop(self.take("word")[1])
            self.take("comma")
            prefix = _literal(*self.take("str")).lower()
            self.take("rp")
            return lambda item: str(_get(item, name) or "").lower().startswith(prefix)
        name = self.prop(self.take("word")[1])
        op = self.take("word")[1]
        if op not in _OPS:
            raise invalid_query("$filter", self.text, f"unknown operator {op!r}; use eq, ne, gt, ge, lt or le")
        lit_tok = self.take()
        expected = _literal(*lit_tok)
        return lambda item: _compare(_get(item, name), op, expected)


def parse_filter(text: str | None, allowed: frozenset[str]) -> Predicate | None:
    if not text:
        return None
    return _Parser(text, allowed).parse()


def apply_select(item: dict, select: str | None) -> dict:
    if not select:
        return item
    wanted = {s.strip() for s in select.split(",") if s.strip()}
    return {k: v for k, v in item.items() if k in wanted}


JOB_FILTER_PROPS = frozenset({
    "id", "state", "stateTransitionTime", "creationTime", "lastModified", "priority",
    "executionInfo/startTime", "executionInfo/endTime", "executionInfo/poolId", "executionInfo/terminateReason",
    "poolInfo/poolId",
})
TASK_FILTER_PROPS = frozenset({
    "id", "state", "stateTransitionTime", "creationTime", "lastModified", "displayName",
    "executionInfo/exitCode", "executionInfo/startTime", "executionInfo/endTime", "executionInfo/result",
    "executionInfo/retryCount", "nodeInfo/nodeId",
})
POOL_FILTER_PROPS = frozenset({"id", "state", "allocationState", "vmSize", "creationTime", "lastModified"})
NODE_FILTER_PROPS = frozenset({"id", "state", "schedulingState"})
FILE_FILTER_PROPS = frozenset({"name", "isDirectory"})
PREP_FILTER_PROPS = frozenset({"nodeId", "poolId", "jobPreparationTaskExecutionInfo/state",
                               "jobPreparationTaskExecutionInfo/exitCode"})
