"""Start-up checks and settings: a missing setting fails fast by name; Core Tools' precedence; the CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import pytest

from local.host import HostConfigError
from local.host.http_trigger import Route
from local.host.settings import LocalSettings, effective_settings, parse_timespan, read_host_json
from local.host.timer_trigger import Schedule

REPO = Path(__file__).resolve().parents[2]


def test_missing_app_setting_fails_fast_naming_function_binding_and_setting(make_app, start_host):
    app_dir = make_app({"ServiceBusConnection": "Endpoint=sb://127.0.0.1:1;SharedAccessKeyName=k;SharedAccessKey=x"})
    with pytest.raises(HostConfigError) as error:
        start_host(app_dir, "sb_echo")
    message = str(error.value)
    assert "'sb_echo'" in message and "'msg'" in message and "%OK_QUEUE%" in message
    assert "local.settings.json" in message  # says where to set it


def test_missing_connection_setting_fails_fast_naming_it(make_app, start_host):
    app_dir = make_app({"OK_QUEUE": "host-ok"})
    with pytest.raises(HostConfigError, match=r"function 'sb_echo', binding 'msg': connection setting "
                                              r"'ServiceBusConnection' is not set"):
        start_host(app_dir, "sb_echo")


def test_identity_connection_is_explained(make_app, start_host):
    app_dir = make_app({"OK_QUEUE": "q", "ServiceBusConnection__fullyQualifiedNamespace": "x.servicebus.windows.net"})
    with pytest.raises(HostConfigError, match="identity-based"):
        start_host(app_dir, "sb_echo")


def test_storage_is_required_for_timers(make_app, start_host):
    app_dir = make_app({})
    with pytest.raises(HostConfigError, match="'AzureWebJobsStorage' is not set"):
        start_host(app_dir, "tick")


def test_process_environment_wins_over_local_settings_values():
    local = LocalSettings(values={"A": "file", "B": "file"}, connection_strings={}, port=None)
    merged = effective_settings(local, {"A": "env"}, {"C": "override"})
    assert merged["A"] == "env" and merged["B"] == "file" and merged["C"] == "override"


def test_host_json_options(tmp_path):
    (tmp_path / "host.json").write_text(json.dumps({"version": "2.0", "extensions": {"serviceBus": {
        "messageHandlerOptions": {"maxConcurrentCalls": 3, "maxAutoRenewDuration": "00:02:30"}}}}))
    options = read_host_json(tmp_path)
    assert options.service_bus.max_concurrent_calls == 3
    assert options.service_bus.max_auto_lock_renewal.total_seconds() == 150
    assert options.blobs.poison_blob_threshold == 5 and options.route_prefix == "api"
    (tmp_path / "host.json").write_text('{"version": "1.0"}')
    with pytest.raises(HostConfigError, match='"version" must be "2.0"'):
        read_host_json(tmp_path)


def test_schedules_and_routes():
    assert parse_timespan("1.02:03:04.5", "x").total_seconds() == 93784.5
    with pytest.raises(HostConfigError, match="NCRONTAB"):
        Schedule("*/5 * * *", "f", "timer")  # four fields are neither form
    assert Schedule("0 */5 * * * *", "f", "t").monitored_by_default()
    assert not Schedule("*/10 * * * * *", "f", "t").monitored_by_default()
    assert Schedule("00:00:10", "f", "t").interval.total_seconds() == 10
    items = Route("items/{id:int}/{name?}", "api")
    assert items.match("/api/items/42/Widget") == {"id": "42", "name": "Widget"}
    assert items.match("/API/Items/42/") == {"id": "42"}  # literals case-insensitive, trailing slash ignored
    assert items.match("/api/items/x") is None and items.match("/api/items/1/2/3") is None
    files = Route("files/{*rest}", "")
    assert files.match("/files/a/b.txt") == {"rest": "a/b.txt"} and files.match("/files") == {}
    assert Route("report.{ext}", "api").match("/api/REPORT.csv") == {"ext": "csv"}
    assert Route("page/{n=1}", "api").match("/api/page") == {"n": "1"}
    assert Route("items/new", "api").precedence < Route("items/{id}", "api").precedence


def _read_line(process: subprocess.Popen, timeout: float) -> str:
    line: list[str] = []
    reader = threading.Thread(target=lambda: line.append(process.stdout.readline().decode().strip()), daemon=True)
    reader.start()
    reader.join(timeout)
    return line[0] if line else ""


def test_command_line_serves_until_sigterm(make_app):
    app_dir = make_app({})
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen([sys.executable, "-m", "local.host", "--app-dir", str(app_dir), "--port", "0",
                                "--functions", "http_items"], cwd=REPO, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, env=env)
    try:
        line = _read_line(process, 30)
        assert line.startswith("HOST_URL=http://127.0.0.1:"), line if line else process.stderr.read1().decode()
        with urllib.request.urlopen(line.split("=", 1)[1] + "/api/items/5", timeout=10) as response:
            assert json.loads(response.read())["route"] == {"id": "5"}
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
        assert b"host stopped" in process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_command_line_exits_2_with_the_reason(make_app):
    app_dir = make_app({})
    result = subprocess.run([sys.executable, "-m", "local.host", "--app-dir", str(app_dir), "--port", "0",
                             "--functions", "sb_echo"], cwd=REPO, capture_output=True, timeout=60)
    assert result.returncode == 2
    assert b"%OK_QUEUE%" in result.stderr and result.stdout == b""
