"""Subscription rules: Service Bus's SQL filters and correlation filters, evaluated on a message's properties.

SQL filters follow Service Bus's SQL filter syntax (a SQL-92 subset): comparisons (`=`, `<>`, `!=`, `<`,
`<=`, `>`, `>=`), `AND`/`OR`/`NOT`, `IS [NOT] NULL`, `[NOT] IN (...)`, `[NOT] LIKE 'p%t_n' [ESCAPE '!']`,
`EXISTS(name)`, arithmetic (`+ - * / %`), string, number, `TRUE`/`FALSE`/`NULL` constants, and parentheses.
A name is a user (application) property, `user.name`, or a system property `sys.name` (`sys.Label`,
`sys.MessageId`, `sys.CorrelationId`, `sys.To`, `sys.ReplyTo`, `sys.SessionId`, `sys.ContentType`, ...);
`[a name]` quotes one. Keywords and names ignore case. A comparison with a missing property is unknown,
and a filter whose result is unknown does not match, as in SQL.

Correlation filters match when every property they name equals the message's.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any


class FilterError(ValueError):
    """The filter cannot be parsed; the message says where."""


class EvaluationError(ValueError):
    """The filter cannot be evaluated on this message (e.g. text compared with a number)."""


# What `sys.<name>` refers to, from the AMQP properties section (and a few broker-side values).
SYSTEM = {"messageid": "message_id", "correlationid": "correlation_id", "to": "to", "replyto": "reply_to",
          "label": "subject", "subject": "subject", "sessionid": "group_id", "replytosessionid": "reply_to_group_id",
          "contenttype": "content_type", "contentencoding": "content_encoding", "userid": "user_id"}

_TOKEN = re.compile(r"""
    \s*(?:
      (?P<string>'(?:[^']|'')*')
    | (?P<number>\d+\.\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?|\d+(?:[eE][+-]?\d+)?)
    | (?P<bracket>\[[^\]]+\])
    | (?P<name>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)?)
    | (?P<op><>|!=|<=|>=|=|<|>|\(|\)|,|\+|-|\*|/|%)
    )""", re.VERBOSE)
_KEYWORDS = {"and", "or", "not", "is", "null", "in", "like", "escape", "exists", "true", "false"}


@dataclass
class _Tok:
    kind: str
    value: Any
    pos: int


def _tokens(text: str) -> list[_Tok]:
    out, pos = [], 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        match = _TOKEN.match(text, pos)
        if not match or match.end() == pos:
            raise FilterError(f"unexpected character {text[pos:].strip()[:1]!r} at {pos}")
        kind = match.lastgroup
        raw = match.group(kind)
        start = match.start(kind)
        if kind == "string":
            out.append(_Tok("const", raw[1:-1].replace("''", "'"), start))
        elif kind == "number":
            out.append(_Tok("const", float(raw) if any(c in raw for c in ".eE") else int(raw), start))
        elif kind == "bracket":
            out.append(_Tok("name", ("user", raw[1:-1]), start))
        elif kind == "name":
            low = raw.lower()
            if low in _KEYWORDS:
                out.append(_Tok("kw", low, start))
            else:
                scope, _, name = raw.partition(".") if "." in raw else ("user", "", raw)
                if scope.lower() not in ("sys", "user"):
                    raise FilterError(f"unknown property scope {scope!r} at {start} (use sys. or user.)")
                out.append(_Tok("name", (scope.lower(), name), start))
        else:
            out.append(_Tok("op", raw, start))
        pos = match.end()
    out.append(_Tok("end", None, len(text)))
    return out


Node = Callable[[Mapping], Any]
class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.toks = _tokens(text)
        self.i = 0

    def peek(self, kind: str, value: Any = None) -> bool:
        tok = self.toks[self.i]
        return tok.kind == kind and (value is None or tok.value == value)

    def take(self, kind: str, value: Any = None) -> _Tok:
        tok = self.toks[self.i]
        if not self.peek(kind, value):
            wanted = value or kind
            raise FilterError(f"expected {wanted!r} at {tok.pos}, found {tok.value if tok.value is not None else 'the end'!r}")
        self.i += 1
        return tok

    def accept(self, kind: str, value: Any = None) -> bool:
        if self.peek(kind, value):
            self.i += 1
            return True
        return False

    def parse(self) -> Node:
        node = self.disjunction()
        self.take("end")
        return node

    def disjunction(self) -> Node:
        node = self.conjunction()
        while self.accept("kw", "or"):
            left, right = node, self.conjunction()
            node = _or(left, right)
        return node

    def conjunction(self) -> Node:
        node = self.negation()
        while self.accept("kw", "and"):
            left, right = node, self.negation()
            node = _and(left, right)
        return node

    def negation(self) -> Node:
        if self.accept("kw", "not"):
            return _not_if(True, self.negation())
        return self.predicate()

    def predicate(self) -> Node:
        if self.accept("kw", "exists"):
            self.take("op", "(")
            scope, name = self.take("name").value
            self.take("op", ")")
            return lambda m: _lookup(m, scope, name) is not None
        left = self.additive()
        if self.accept("kw", "is"):
            negate = self.accept("kw", "not")
            self.take("kw", "null")
            return (lambda m: left(m) is not None) if negate else (lambda m: left(m) is None)
        negate = self.accept("kw", "not")
        if self.accept("kw", "in"):
            self.take("op", "(")
            items = [self.additive()]
            while self.accept("op", ","):
                items.append(self.additive())
            self.take("op", ")")
            return _not_if(negate, _in(left, items))
        if self.accept("kw", "like"):
            pattern = self.take("const").value
            escape = self.take("const").value if self.accept("kw", "escape") else None
            if not isinstance(pattern, str) or (escape is not None and (not isinstance(escape, str) or len(escape) != 1)):
                raise FilterError("LIKE takes a string pattern and a one-character ESCAPE")
            return _not_if(negate, _like(left, pattern, escape))
        if negate:
            raise FilterError(f"expected IN or LIKE after NOT at {self.toks[self.i].pos}")
        for op in ("=", "<>", "!=", "<=", ">=", "<", ">"):
            if self.accept("op", op):
                right = self.additive()
                return _compare(op, left, right)
        # A bare value is a predicate only when it is boolean (TRUE, FALSE, a boolean property).
        return lambda m: _truth(left(m))

    def additive(self) -> Node:
        node = self.multiplicative()
        while self.peek("op", "+") or self.peek("op", "-"):
            op = self.take("op").value
            node = _arith(op, node, self.multiplicative())
        return node

    def multiplicative(self) -> Node:
        node = self.unary()
        while self.peek("op", "*") or self.peek("op", "/") or self.peek("op", "%"):
            op = self.take("op").value
            node = _arith(op, node, self.unary())
        return node

    def unary(self) -> Node:
        if self.accept("op", "-"):
            inner = self.unary()
            return lambda m: None if (v := inner(m)) is None else -_number(v)
        if self.accept("op", "+"):
            return self.unary()
        return self.primary()

    def primary(self) -> Node:
        if self.accept("op", "("):
            # A parenthesised predicate or expression.
            node = self.disjunction()
            self.take("op", ")")
            return node
        if self.peek("const"):
            value = self.take("const").value
            return lambda m: value
        if self.accept("kw", "true"):
            return lambda m: True
        if self.accept("kw", "false"):
            return lambda m: False
        if self.accept("kw", "null"):
            return lambda m: None
        if self.peek("name"):
            scope, name = self.take("name").value
            return lambda m: _lookup(m, scope, name)
        tok = self.toks[self.i]
        raise FilterError(f"unexpected {tok.value if tok.value is not None else 'end'!r} at {tok.pos}")


def _lookup(message: Mapping, scope: str, name: str) -> Any:
    table = message.get(scope) or {}
    return table.get(name.lower())


def _truth(value: Any) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    raise EvaluationError(f"{value!r} is not a boolean")


def _junction(left: Node, right: Node, decisive: bool) -> Node:
    """SQL's three-valued AND (decisive False) and OR (decisive True): one decisive side settles it, and the
    right side is not evaluated after a decisive left; otherwise an unknown side leaves it unknown."""
    def run(m):
        a = left(m)
        if a is decisive:
            return decisive
        b = right(m)
        if b is decisive:
            return decisive
        return None if a is None or b is None else not decisive
    return run


def _and(left: Node, right: Node) -> Node:
    return _junction(left, right, False)


def _or(left: Node, right: Node) -> Node:
    return _junction(left, right, True)


def _not_if(negate: bool, node: Node) -> Node:
    if not negate:
        return node
    return lambda m: None if (v := node(m)) is None else not v


def _number(value: Any) -> int | float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise EvaluationError(f"{value!r} is not a number")
    return value


def _comparable(a: Any, b: Any) -> tuple[Any, Any]:
    if isinstance(a, bool) or isinstance(b, bool):
        if isinstance(a, bool) and isinstance(b, bool):
            return a, b
    elif isinstance(a, int | float) and isinstance(b, int | float) or isinstance(a, str) and isinstance(b, str):
        return a, b
    raise EvaluationError(f"cannot compare {a!r} with {b!r}")


def _compare(op: str, left: Node, right: Node) -> Node:
    def run(m):
        a, b = left(m), right(m)
        if a is None or b is None:
            return None
        a, b = _comparable(a, b)
        if op == "=":
            return a == b
        if op in ("<>", "!="):
            return a != b
        if isinstance(a, bool):
            raise EvaluationError("booleans are compared with = and <> only")
        return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]
    return run


def _arith(op: str, left: Node, right: Node) -> Node:
    def run(m):
        a, b = left(m), right(m)
        if a is None or b is None:
            return None
        if op == "+" and isinstance(a, str) and isinstance(b, str):
            return a + b
        a, b = _number(a), _number(b)
        if op in ("/", "%") and b == 0:
            raise EvaluationError("division by zero")
        if op == "/":
            return a // b if isinstance(a, int) and isinstance(b, int) else a / b
        return {"+": a + b, "-": a - b, "*": a * b, "%": a % b}[op]
    return run


def _in(left: Node, items: list[Node]) -> Node:
    def run(m):
        value = left(m)
        if value is None:
            return None
        for item in items:
            other = item(m)
            if other is None:
                continue
            try:
                a, b = _comparable(value, other)
            except EvaluationError:
                continue
            if a == b:
                return True
        return False
    return run


def _like(left: Node, pattern: str, escape: str | None) -> Node:
    regex, i = "", 0
    while i < len(pattern):
        c = pattern[i]
        if escape is not None and c == escape and i + 1 < len(pattern):
            regex += re.escape(pattern[i + 1])
            i += 2
            continue
        regex += ".*" if c == "%" else "." if c == "_" else re.escape(c)
        i += 1
    compiled = re.compile(f"^{regex}$", re.DOTALL)

    def run(m):
        value = left(m)
        if value is None:
            return None
        if not isinstance(value, str):
            raise EvaluationError(f"LIKE needs text, got {value!r}")
        return bool(compiled.match(value))
    return run


# -- rules ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    name: str
    sql: str | None = None  # a SQL filter, or
    correlation: dict | None = None  # a correlation filter: system names and "properties"
    _node: Any = field(default=None, compare=False, repr=False)

    @staticmethod
    def sql_filter(name: str, expression: str) -> Rule:
        text = expression.strip()
        node = _Parser(text).parse()
        return Rule(name=name, sql=text, _node=node)

    def matches(self, message: Mapping) -> bool:
        """True if the rule selects the message; EvaluationError if the filter cannot be evaluated on it."""
        if self.correlation is not None:
            return _correlation_matches(self.correlation, message)
        return self._node(message) is True


TRUE_RULE = Rule.sql_filter("$Default", "1=1")

# Correlation filter fields, as ARM and the SDK name them, to the sys.* names above.
CORRELATION_FIELDS = {"correlationId": "correlationid", "messageId": "messageid", "to": "to", "replyTo": "replyto",
                      "label": "label", "subject": "label", "sessionId": "sessionid",
                      "replyToSessionId": "replytosessionid", "contentType": "contenttype"}


def _correlation_matches(spec: dict, message: Mapping) -> bool:
    system = message.get("sys") or {}
    user = message.get("user") or {}
    for key, wanted in spec.items():
        if key == "properties":
            for name, value in (wanted or {}).items():
                if user.get(str(name).lower()) != value:
                    return False
        elif system.get(CORRELATION_FIELDS[key]) != wanted:
            return False
    return True


def message_view(properties: Mapping[str, Any], application: Mapping[Any, Any]) -> dict:
    """What filters read: `sys` from the AMQP properties section (field names as in SYSTEM), `user` from the
    application properties; both keyed by lower-case name."""
    system = {}
    for sys_name, field_name in SYSTEM.items():
        value = properties.get(field_name)
        if isinstance(value, bytes):
            value = value.decode("utf-8", errors="replace")
        if value is not None and not isinstance(value, str | int | float | bool):
            value = str(value)
        system[sys_name] = value
    user = {}
    for key, value in (application or {}).items():
        name = key.decode() if isinstance(key, bytes) else str(key)
        if isinstance(value, bytes):
            value = value.decode("utf-8", errors="replace")
        user[name.lower()] = value
    return {"sys": system, "user": user}
