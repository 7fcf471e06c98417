"""Reading a job's report for the HTTP API and the CLI."""

from __future__ import annotations

from shared.adapters.store import Store
from shared.pure.report import outcome_only


def job_report(store: Store, job_id: str) -> dict | None:
    """The report; before collection has written one, a report of the outcome alone; None if neither."""
    found = store.report(job_id)
    if found is not None:
        return found
    outcome = store.outcome(job_id)
    return outcome_only(job_id, outcome) if outcome is not None else None
