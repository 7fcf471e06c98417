"""`submit --wait` says which phase a job is in, and its exit code says how the wait ended.

The adapters are stood in for by small fakes of our own interfaces (not the Azure SDK): what matters here
is the CLI's reading of the job and the report, which the end-to-end tests run against the real stack."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import typer

from local import cli
from shared.pure.values import Job, TaskCounts


class FakeBatch:
    def __init__(self, state):
        self.state = state

    def get_job(self, job_id):
        return Job(id=job_id, state=self.state)

    def task_counts(self, job_id):
        return TaskCounts(completed=4, succeeded=4)


class FakeStore:
    def __init__(self, report):
        self._report = report

    def report(self, job_id):
        return self._report


class FakeServices:
    def __init__(self, state, report):
        self.batch, self.store = FakeBatch(state), FakeStore(report)


def collecting(collected, expected):
    return {"outcome": {"terminateReason": "AllTasksComplete"}, "collectionComplete": False,
            "collection": {"collectedNodes": collected, "expectedNodes": [f"n{i}" for i in range(expected)],
                           "nodesWithoutManifest": []}}


@pytest.mark.parametrize(("state", "report", "code", "says"), [
    ("active", None, 1, "did not finish within 0 ms. It keeps running"),
    ("completed", None, 3, "job finished, collection still running (0 of ? nodes collected"),
    ("completed", collecting(1, 2), 3, "job finished, collection still running (1 of 2 nodes collected"),
])
def test_a_wait_that_runs_out_says_which_phase_it_was_in(capsys, state, report, code, says):
    with pytest.raises(typer.Exit) as ended:
        cli.wait_for_job(FakeServices(state, report), "j", 4, timeout=0)
    assert ended.value.exit_code == code
    assert says in " ".join(capsys.readouterr().err.split())


def test_a_complete_report_ends_the_wait():
    done = {**collecting(2, 2), "collectionComplete": True}
    assert cli.wait_for_job(FakeServices("completed", done), "j", 4, timeout=5) is done


def test_collection_line_leaves_out_nodes_without_a_manifest():
    report = collecting(1, 3)
    report["collection"]["nodesWithoutManifest"] = ["n2"]
    assert cli._collection_line(report) == (1, 2)
    assert cli._collection_line(None) == (0, None)


def test_status_shows_log_lines_as_they_are_not_as_markup(capsys):
    report = {"outcome": {"terminateReason": "AllTasksComplete"}, "collectionComplete": True,
              "nodes": [{"nodeId": "n[1]", "status": "collected"}], "totals": {},
              "tasks": {"failedTotal": 1, "failed": [{"id": "t1", "nodeId": "n[1]", "exitCode": 2,
                                                       "excerpt": ["Error: cannot open [/data/input.csv]"]}]},
              "crashGroups": [{"count": 1, "executable": "[bold]x[/bold]", "nodes": ["n[1]"]}]}

    class NoJob(FakeBatch):
        def get_job(self, job_id):
            return None

    services = FakeServices("completed", report)
    services.batch = NoJob("completed")
    cli.show_status(services, "j", report)
    out = capsys.readouterr().out
    assert "[/data/input.csv]" in out and "[bold]x[/bold]" in out and "n[1]" in out


class CreatedBatch(FakeBatch):
    def get_job(self, job_id):
        return Job(id=job_id, state=self.state, creation_time=datetime(2026, 1, 1, 12, 0, tzinfo=UTC))


def test_progress_shows_the_time_since_the_job_was_created_then_the_nodes_collected(capsys):
    """Elapsed is Batch's: a job followed again has run longer than this command; then the collection."""
    services = FakeServices("completed", {**collecting(2, 2), "collectionComplete": True})
    services.batch = CreatedBatch("completed")
    cli.wait_for_job(services, "j", 4, timeout=5, now=lambda: datetime(2026, 1, 1, 12, 1, 5, tzinfo=UTC))
    out = " ".join(capsys.readouterr().out.split())
    assert "j: tasks completed, 0 running, 0 failed, for 1 min 05 s" in out
    assert "collecting logs: 2 of 2 nodes" in out


def test_collecting_logs_counts_nodes_as_they_are_collected(capsys):
    with pytest.raises(typer.Exit):
        cli.wait_for_job(FakeServices("completed", collecting(1, 3)), "j", 4, timeout=0)
    assert "collecting logs: 1 of 3 nodes" in " ".join(capsys.readouterr().out.split())


def test_status_of_a_job_deleted_after_retention_says_so_in_words(capsys):
    report = {"outcome": {"state": "completed", "terminateReason": "AllTasksComplete",
                          "createdAt": "2026-01-01T12:00:00+00:00", "endedAt": "2026-01-01T12:10:00+00:00"},
              "collectionComplete": True, "nodes": [], "totals": {}}

    class NoJob(FakeBatch):
        def get_job(self, job_id):
            return None

    services = FakeServices("completed", report)
    services.batch = NoJob("completed")
    cli.show_status(services, "j", report)
    out = " ".join(capsys.readouterr().out.split())
    assert ("j: deleted from Batch after the retention period; from its report: completed, ended: AllTasksComplete, "
            "created 2026-01-01 12:00:00 UTC, ended 2026-01-01 12:10:00 UTC") in out
