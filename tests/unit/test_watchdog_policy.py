from datetime import UTC, datetime, timedelta

import pytest

from shared.pure import metadata as md
from shared.pure.values import Job, TaskCounts
from shared.pure.watchdog_policy import (
    PREP_STATUS,
    TASK_COUNTS,
    Delete,
    FinishSubmission,
    JobSnapshot,
    Nothing,
    Policy,
    PrepInfo,
    RecordOutcome,
    Terminate,
    decide,
    needs_details,
)

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
POLICY = Policy()
MIN = timedelta(minutes=1)


def meta(deadline=NOW + 60 * MIN, expected=8, submitted=True, recorded=False):
    return md.encode(md.JobMetadata(deadline, "h" * 64, expected, submitted, recorded))


def job(state="active", metadata=None, age=30 * MIN, task_counts=None, prep=None, outcome_recorded=None, **kw):
    listed = Job(id=kw.pop("job_id", "job-1"), state=state, metadata=meta() if metadata is None else metadata,
                 creation_time=NOW - age, **kw)
    return JobSnapshot(listed, outcome_recorded=outcome_recorded, task_counts=task_counts, prep=prep)


def counts(active=0, running=0, completed=8, failed=0):
    return TaskCounts(active=active, running=running, completed=completed, succeeded=completed - failed, failed=failed)


def prep(tried=2, failed=2, running=0, ago=10 * MIN):
    return PrepInfo(nodes_tried=tried, nodes_failed=failed, nodes_running=running, last_failure_time=NOW - ago)


CASES = [
    # (name, snapshot, expected decision)
    ("unmanaged", job(metadata={"team": "x"}), Nothing("not managed")),
    ("healthy running", job(), Nothing("running")),
    ("deadline passed", job(metadata=meta(deadline=NOW - MIN)), Terminate("OrchestratorTimeout")),
    ("deadline exactly now", job(metadata=meta(deadline=NOW)), Terminate("OrchestratorTimeout")),
    ("deadline beats all complete", job(metadata=meta(deadline=NOW - MIN), task_counts=counts()),
     Terminate("OrchestratorTimeout")),
    ("disabled past deadline", job("disabled", meta(deadline=NOW - MIN)), Terminate("OrchestratorTimeout")),
    ("all complete, still active", job(task_counts=counts()), Terminate("AllTasksComplete")),
    ("all complete, patch never happened", job(metadata=meta(submitted=False), task_counts=counts()),
     Terminate("AllTasksComplete")),
    ("some tasks still active", job(task_counts=counts(active=1, completed=7)), Nothing("running")),
    ("fewer tasks than expected, submitting", job(metadata=meta(submitted=False), age=2 * MIN,
                                                   task_counts=counts(completed=3)), Nothing("submission in progress")),
    ("submission in grace", job(metadata=meta(submitted=False), age=9 * MIN), Nothing("submission in progress")),
    ("submission past grace", job(metadata=meta(submitted=False), age=10 * MIN,
                                  task_counts=counts(completed=3)), FinishSubmission()),
    ("submission abandoned", job(metadata=meta(submitted=False), age=121 * MIN), Terminate("SubmissionAbandoned")),
    ("prep failed everywhere", job(prep=prep(), task_counts=counts(active=8, completed=0)),
     Terminate("PrepTaskFailed")),
    ("prep failed, within grace", job(prep=prep(ago=2 * MIN), task_counts=counts(active=8, completed=0)),
     Nothing("running")),
    ("prep failed on some nodes", job(prep=prep(tried=3, failed=2), task_counts=counts(active=8, completed=0)),
     Nothing("running")),
    ("prep failed, tasks running", job(prep=prep(), task_counts=counts(running=1, active=7, completed=0)),
     Nothing("running")),
    ("prep still running somewhere", job(prep=prep(tried=2, failed=2, running=1)), Nothing("running")),
    ("no node tried prep", job(prep=prep(tried=0, failed=0)), Nothing("running")),
    ("completed, outcome not recorded", job("completed", end_time=NOW - MIN), RecordOutcome()),
    ("completed, outcome recorded", job("completed", meta(recorded=True), end_time=NOW - MIN),
     Nothing("completed, within retention")),
    ("completed, adapter says recorded", job("completed", end_time=NOW - MIN, outcome_recorded=True),
     Nothing("completed, within retention")),
    ("completed, past retention", job("completed", meta(recorded=True), end_time=NOW - timedelta(days=8)), Delete()),
    ("completed, retention from creation if no end", job("completed", meta(recorded=True), age=timedelta(days=8)),
     Delete()),
    ("terminating", job("terminating", meta(deadline=NOW - MIN)), Nothing("terminating: Batch is acting on it")),
    ("deleting", job("deleting"), Nothing("deleting: Batch is acting on it")),
    ("corrupt metadata", job(metadata={**meta(), md.DEADLINE: "soon"}), Nothing("managed but unreadable")),
]


def _same(actual, expected):
    if type(actual) is not type(expected):
        return False
    if isinstance(expected, Terminate):
        return actual.reason == expected.reason
    if isinstance(expected, Nothing):
        return actual.note.startswith(expected.note)
    return True


@pytest.mark.parametrize(("name", "snapshot", "expected"), CASES, ids=[c[0] for c in CASES])
def test_decide(name, snapshot, expected):
    actual = decide(snapshot, NOW, POLICY)
    assert _same(actual, expected), actual


DETAIL_CASES = [
    ("healthy young job", job(age=5 * MIN), frozenset()),
    ("unmanaged", job(metadata={}), frozenset()),
    ("completed", job("completed"), frozenset()),
    ("deadline passed: terminate anyway", job(metadata=meta(deadline=NOW - MIN), age=3 * 60 * MIN), frozenset()),
    ("submission in grace", job(metadata=meta(submitted=False), age=MIN), frozenset()),
    ("submission past grace", job(metadata=meta(submitted=False), age=11 * MIN), frozenset({TASK_COUNTS})),
]


@pytest.mark.parametrize(("name", "snapshot", "expected"), DETAIL_CASES, ids=[c[0] for c in DETAIL_CASES])
def test_needs_details(name, snapshot, expected):
    assert needs_details(snapshot, NOW, POLICY) == expected


def test_prep_checks_are_spread_and_bounded():
    jobs = [job(job_id=f"job-{i}", age=60 * MIN) for i in range(2000)]
    interval = POLICY.prep_check_interval // POLICY.sweep_period
    per_sweep = []
    for sweep in range(interval):
        now = NOW + sweep * POLICY.sweep_period
        per_sweep.append(sum(1 for j in jobs if PREP_STATUS in needs_details(j, now, POLICY)))
    assert sum(per_sweep) == 2000  # every old job once per interval
    assert max(per_sweep) < 3 * 2000 / interval  # and not all in one sweep


def test_young_jobs_never_cost_a_call():
    jobs = [job(job_id=f"job-{i}", age=MIN) for i in range(2000)]
    assert not any(needs_details(j, NOW, POLICY) for j in jobs)


def test_naive_now_is_refused():
    with pytest.raises(ValueError):
        decide(job(), NOW.replace(tzinfo=None), POLICY)


def test_prep_check_costs_one_call():
    old = job(age=60 * MIN)
    due = [needs_details(old, NOW + i * POLICY.sweep_period, POLICY) for i in range(15)]
    assert frozenset({PREP_STATUS}) in due and all(d in (frozenset(), frozenset({PREP_STATUS})) for d in due)
