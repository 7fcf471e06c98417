"""Subscription rules on their own: the SQL filter language and correlation filters (filters.py)."""

from __future__ import annotations

import pytest

from local.servicebus.filters import EvaluationError, FilterError, Rule, message_view

MESSAGE = message_view({"subject": "job-done", "correlation_id": "c1", "message_id": "m1", "to": None},
                       {b"status": "failed", "n": 5, "region": "eu-west", "ok": True, "Mixed": "Case"})


@pytest.mark.parametrize("expression, expected", [
    ("status = 'failed'", True),
    ("status = 'FAILED'", False),  # values compare exactly
    ("STATUS = 'failed'", True),  # names and keywords ignore case
    ("n > 3 AND n < 10", True),
    ("n >= 6 OR region = 'eu-west'", True),
    ("sys.Label = 'job-done' AND sys.CorrelationId = 'c1' AND sys.MessageId = 'm1'", True),
    ("region LIKE 'eu-%'", True),
    ("region LIKE 'eu_west'", True),
    ("region NOT LIKE 'us%'", True),
    ("region LIKE 'eu!-%' ESCAPE '!'", True),
    ("n IN (1, 5, 9)", True),
    ("n NOT IN (1, 5, 9)", False),
    ("missing IS NULL AND status IS NOT NULL", True),
    ("EXISTS(status) AND NOT EXISTS(missing)", True),
    ("missing = 1", False),  # unknown does not match...
    ("NOT (missing = 1)", False),  # ...nor does its negation
    ("missing = 1 OR n = 5", True),
    ("ok = TRUE", True),
    ("ok", True),
    ("n * 2 + 1 = 11 AND n % 2 = 1 AND -n = -5 AND n / 2 = 2", True),
    ("[status] = 'failed' AND user.status = 'failed' AND user.mixed = 'Case'", True),
    ("status = 'it''s'", False),
    ("1=1", True),
    ("(status = 'failed') AND (n = 5 OR n = 6)", True),
])
def test_sql_filters(expression, expected):
    assert Rule.sql_filter("r", expression).matches(MESSAGE) is expected


@pytest.mark.parametrize("expression", ["status ==", "foo.bar = 1", "(a = 1", "a LIKE 3", "a NOT = 1", "'x", "a = 1 1"])
def test_malformed_filters_are_refused(expression):
    with pytest.raises(FilterError):
        Rule.sql_filter("r", expression)


@pytest.mark.parametrize("expression", ["status > 3", "n / 0 = 1", "region LIKE 'x' OR n LIKE 'y'", "n"])
def test_filters_that_cannot_be_evaluated_say_so(expression):
    with pytest.raises(EvaluationError):
        Rule.sql_filter("r", expression).matches(MESSAGE)


def test_correlation_filters():
    assert Rule("c", correlation={"correlationId": "c1", "properties": {"status": "failed"}}).matches(MESSAGE)
    assert Rule("c", correlation={"label": "job-done"}).matches(MESSAGE)
    assert not Rule("c", correlation={"label": "job-done", "properties": {"n": 6}}).matches(MESSAGE)
    assert not Rule("c", correlation={"sessionId": "s"}).matches(MESSAGE)
