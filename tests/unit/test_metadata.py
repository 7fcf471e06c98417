from datetime import UTC, datetime, timedelta, timezone
from types import SimpleNamespace

import pytest

from shared.pure import metadata as md

DEADLINE = datetime(2026, 1, 2, 3, 4, 5, 600000, tzinfo=UTC)
META = md.JobMetadata(deadline=DEADLINE, request_hash="ab" * 32, expected_tasks=8)


def test_encode_decode_round_trip():
    encoded = md.encode(META)
    assert encoded == {
        "orchestrator.managed": "true",
        "orchestrator.deadline": "2026-01-02T03:04:05.600000Z",
        "orchestrator.requestHash": "ab" * 32,
        "orchestrator.expectedTasks": "8",
        "orchestrator.submitted": "false",
        "orchestrator.outcomeRecorded": "false",
    }
    assert md.decode(encoded) == META


def test_deadline_is_stored_in_utc():
    local = DEADLINE.astimezone(timezone(timedelta(hours=5)))
    assert md.encode(md.JobMetadata(local, "h", 1))[md.DEADLINE] == "2026-01-02T03:04:05.600000Z"


def test_naive_deadline_is_refused():
    with pytest.raises(ValueError):
        md.encode(md.JobMetadata(datetime(2026, 1, 1), "h", 1))


@pytest.mark.parametrize(
    ("items", "expected"),
    [
        (None, {}),
        ({"a": "1"}, {"a": "1"}),
        ([{"name": "a", "value": "1"}], {"a": "1"}),
        ([SimpleNamespace(name="a", value="1")], {"a": "1"}),
    ],
)
def test_as_dict_accepts_batch_shapes(items, expected):
    assert md.as_dict(items) == expected


def test_to_items_is_sorted():
    assert md.to_items({"b": "2", "a": "1"}) == [{"name": "a", "value": "1"}, {"name": "b", "value": "2"}]


@pytest.mark.parametrize(
    ("change", "key", "rule"),
    [
        ({md.DEADLINE: None}, md.DEADLINE, "is missing"),
        ({md.DEADLINE: "yesterday"}, md.DEADLINE, "ISO 8601"),
        ({md.DEADLINE: "2026-01-01T00:00:00"}, md.DEADLINE, "ISO 8601"),
        ({md.EXPECTED_TASKS: "-1"}, md.EXPECTED_TASKS, "non-negative"),
        ({md.REQUEST_HASH: ""}, md.REQUEST_HASH, "is missing"),
        ({md.SUBMITTED: "yes"}, md.SUBMITTED, "'true' or 'false'"),
    ],
)
def test_decode_names_key_and_rule(change, key, rule):
    data = md.encode(META)
    for k, v in change.items():
        if v is None:
            data.pop(k)
        else:
            data[k] = v
    with pytest.raises(md.MetadataError) as info:
        md.decode(data)
    assert info.value.key == key and rule in str(info.value)


@pytest.mark.parametrize("data", [{}, {"orchestrator.managed": "false"}, {"other": "x"}])
def test_unmanaged_jobs_decode_to_none(data):
    assert md.decode(data) is None and not md.is_managed(data)


def test_marks_keep_foreign_keys():
    data = {**md.encode(META), "team": "risk"}
    submitted = md.mark_submitted(data)
    assert submitted["team"] == "risk" and submitted[md.SUBMITTED] == "true"
    assert md.decode(md.mark_outcome_recorded(submitted)).outcome_recorded is True
    assert data[md.SUBMITTED] == "false"  # input untouched


def test_marks_refuse_unmanaged():
    with pytest.raises(md.MetadataError):
        md.mark_submitted({"team": "risk"})
