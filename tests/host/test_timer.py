"""Timer trigger: seconds-based NCRONTAB, one run at a time, schedule status blob, past due, runOnStartup."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from tests.host.conftest import read_records
from tests.waiting import wait_until


def test_seconds_schedule_fires_one_instance_at_a_time_and_keeps_status(app_dir, start_host, records, host_id,
                                                                        blob_service):
    start_host(app_dir, "tick")
    runs = wait_until(lambda: len(read_records(records, "tick")) >= 3 and read_records(records, "tick"),
                      timeout=15, what="three timer runs")
    for earlier, later in zip(runs, runs[1:], strict=False):
        assert later["start"] >= earlier["end"], "timer runs overlapped"
    assert not any(r["past_due"] for r in runs)
    assert {"Last", "Next", "LastUpdated"} <= set(runs[-1]["status"])

    status_blob = blob_service.get_blob_client("azure-webjobs-hosts", f"timers/{host_id}/Host.Functions.tick/status")
    status = json.loads(status_blob.download_blob().readall())
    assert datetime.fromisoformat(status["Next"]) > datetime.fromisoformat(status["Last"])


def test_missed_occurrence_runs_past_due_and_run_on_startup_runs(app_dir, start_host, records, host_id,
                                                                 blob_service):
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    missed = {"Last": (hour - timedelta(hours=2)).isoformat(), "Next": (hour - timedelta(hours=1)).isoformat(),
              "LastUpdated": (hour - timedelta(hours=2)).isoformat()}
    blob_service.get_blob_client("azure-webjobs-hosts", f"timers/{host_id}/Host.Functions.hourly/status") \
        .upload_blob(json.dumps(missed).encode(), overwrite=True)

    start_host(app_dir, "hourly", "on_startup")
    [hourly] = wait_until(lambda: read_records(records, "hourly"), timeout=10, what="past-due run")
    assert hourly["past_due"] is True
    assert hourly["status"]["Next"] == missed["Next"]
    [startup] = wait_until(lambda: read_records(records, "on_startup"), timeout=10, what="runOnStartup run")
    assert startup["past_due"] is False

    def status_advanced():
        blob = blob_service.get_blob_client("azure-webjobs-hosts", f"timers/{host_id}/Host.Functions.hourly/status")
        return json.loads(blob.download_blob().readall())["Last"] == missed["Next"]

    wait_until(status_advanced, timeout=10, what="status updated after the past-due run")


def test_five_field_cron_fires_on_whole_minutes(app_dir, start_host, host_id, blob_service):
    """Five fields are classic cron (the timer extension's rule: seconds then are 0)."""
    before = datetime.now(UTC)
    start_host(app_dir, "five_field")
    blob = blob_service.get_blob_client("azure-webjobs-hosts", f"timers/{host_id}/Host.Functions.five_field/status")
    status = json.loads(wait_until(lambda: blob.exists() and blob.download_blob().readall(), timeout=10,
                                   what="schedule status"))
    upcoming = datetime.fromisoformat(status["Next"])
    assert upcoming.second == 0 and upcoming.microsecond == 0 and upcoming.minute % 2 == 0
    assert before < upcoming <= before + timedelta(minutes=2)
