from datetime import UTC, datetime, timedelta

import pytest

from shared.pure import metadata as md
from shared.pure.values import Job, TaskCounts
from shared.pure.watchdog_policy import (
    POOL_SIZE,
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
    follow_up,
    needs_details,
    select_checks,
)

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
POLICY = Policy()
MIN = timedelta(minutes=1)


def meta(deadline=NOW + 60 * MIN, expected=8, submitted=True, recorded=False):
    return md.encode(md.JobMetadata(deadline, "h" * 64, expected, submitted, recorded))


def job(state="active", metadata=None, age=30 * MIN, task_counts=None, prep=None, outcome_recorded=None,
        pool_nodes=None, **kw):
    listed = Job(id=kw.pop("job_id", "job-1"), state=state, metadata=meta() if metadata is None else metadata,
                 creation_time=NOW - age, **kw)
    return JobSnapshot(listed, outcome_recorded=outcome_recorded, task_counts=task_counts, prep=prep,
                       pool_nodes=pool_nodes)


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
    ("healthy young job", job(age=5 * MIN), frozenset({TASK_COUNTS})),
    ("healthy old job", job(age=3 * 60 * MIN), frozenset({TASK_COUNTS})),
    ("unmanaged", job(metadata={}), frozenset()),
    ("completed", job("completed"), frozenset()),
    ("terminating", job("terminating"), frozenset()),
    ("disabled: Batch will not run it until enabled", job("disabled"), frozenset()),
    ("deadline passed: terminate anyway", job(metadata=meta(deadline=NOW - MIN), age=3 * 60 * MIN), frozenset()),
    ("submission in grace", job(metadata=meta(submitted=False), age=MIN), frozenset()),
    ("submission past grace", job(metadata=meta(submitted=False), age=11 * MIN), frozenset({TASK_COUNTS})),
]


@pytest.mark.parametrize(("name", "snapshot", "expected"), DETAIL_CASES, ids=[c[0] for c in DETAIL_CASES])
def test_needs_details(name, snapshot, expected):
    assert needs_details(snapshot, NOW, POLICY) == expected


@pytest.mark.parametrize(("young", "old"), [(0, 2_000), (2_000, 0), (250, 250), (60, 7)])
def test_checks_per_sweep_are_bounded_and_every_job_gets_its_turn(young, old):
    far = meta(deadline=NOW + timedelta(days=30))
    jobs = ([job(job_id=f"young-{i}", age=5 * MIN, metadata=far) for i in range(young)]
            + [job(job_id=f"old-{i}", age=5 * 60 * MIN, metadata=far) for i in range(old)])
    turns = max(-(-young // POLICY.young_checks_per_sweep), -(-old // POLICY.backstop_checks_per_sweep), 1)
    seen, per_sweep = set(), []
    for sweep in range(turns):
        chosen = select_checks(jobs, NOW + sweep * POLICY.sweep_period, POLICY)
        per_sweep.append(len(chosen))
        seen |= set(chosen)
    assert seen == {j.job_id for j in jobs}, "every job checked within ceil(jobs / cap) sweeps"
    cap = POLICY.young_checks_per_sweep + POLICY.backstop_checks_per_sweep
    assert max(per_sweep) <= 1.5 * cap, per_sweep  # a hash spreads them: about the cap, never all at once
    if young <= POLICY.young_checks_per_sweep and old <= POLICY.backstop_checks_per_sweep:
        assert per_sweep == [young + old] * turns, "few jobs: every one, every sweep"


FOLLOW_UP = [
    ("nothing ever ran", counts(active=8, completed=0), frozenset({PREP_STATUS, POOL_SIZE})),
    ("running", counts(active=7, running=1, completed=0), frozenset()),
    ("some done", counts(active=4, completed=4), frozenset()),
    ("all done", counts(), frozenset()),
]


@pytest.mark.parametrize(("name", "task_counts", "expected"), FOLLOW_UP, ids=[f[0] for f in FOLLOW_UP])
def test_follow_up_reads_prep_status_only_when_nothing_has_run(name, task_counts, expected):
    assert follow_up(job(task_counts=task_counts)) == expected
    assert follow_up(job(metadata=meta(submitted=False), task_counts=task_counts)) == frozenset()


@pytest.mark.parametrize(("pool_nodes", "ago", "expected"), [
    (2, 0 * MIN, Terminate("PrepTaskFailed")),  # every node of the pool refused: at once
    (3, 10 * MIN, Nothing("running")),  # a third node may still try
    (None, 2 * MIN, Nothing("running")),  # pool size unknown: wait the grace
    (None, 6 * MIN, Terminate("PrepTaskFailed")),
])
def test_prep_failed_on_every_node_of_the_pool_ends_the_job_at_once(pool_nodes, ago, expected):
    snap = job(prep=prep(tried=2, failed=2, ago=ago), task_counts=counts(active=8, completed=0), pool_nodes=pool_nodes)
    assert _same(decide(snap, NOW, POLICY), expected)


def test_naive_now_is_refused():
    with pytest.raises(ValueError):
        decide(job(), NOW.replace(tzinfo=None), POLICY)




def test_a_prep_that_does_not_gate_tasks_ends_nothing_when_it_fails():
    """preparation.waitForSuccess false: Batch runs the tasks on nodes where prep failed too."""
    not_gating = md.encode(md.JobMetadata(deadline=NOW + 60 * MIN, request_hash="h" * 64, expected_tasks=8,
                                          submitted=True, prep_gates_tasks=False))
    assert md.decode(not_gating).prep_gates_tasks is False and md.decode(meta()).prep_gates_tasks is True
    waiting = counts(active=8, completed=0)
    assert follow_up(job(metadata=not_gating, task_counts=waiting)) == frozenset()
    snap = job(metadata=not_gating, prep=prep(tried=2, failed=2), task_counts=waiting, pool_nodes=2)
    assert _same(decide(snap, NOW, POLICY), Nothing("running"))
