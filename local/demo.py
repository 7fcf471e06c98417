"""`make demo`: the seed walk-through, event-driven, on a throwaway local stack.

A pool of two nodes; a request whose preparation task writes the node id into a file in the node's shared
directory, eight tasks that append their ids to it, and a release task that prints then deletes it; sent
through Service Bus; Batch ends the job when its tasks are done; the release tasks upload their logs; the
collector builds the report. Prints, per node, the file's contents and the prep and release exit codes,
then the collected files. Exits non-zero if any step fails and leaves no process behind.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import typer
from rich.console import Console

from local.stack import REPO, Stack, StackOptions
from shared.flows import files
from shared.pure.request import parse_request

EXAMPLE = REPO / "examples" / "job-request.json"
TIMEOUT_S = 180


def run_demo(console: Console | None = None) -> int:
    from local.cli import make_console, send_request, show_status, wait_for_job
    from shared.adapters.services import build
    from shared.pure.settings import load

    console = console or make_console()
    started = time.monotonic()
    raw = EXAMPLE.read_bytes()
    request = parse_request(raw)
    with tempfile.TemporaryDirectory(prefix="orchestrator-demo-") as work:
        options = StackOptions(workdir=Path(work), pool=f"{request.pool_id}:2:1", http_port=0, batch_port=0,
                               servicebus_port=0, persistent=False, watchdog_schedule="*/2 * * * * *")
        try:
            with Stack(options, progress=lambda m: console.print(f"[dim]{m}[/]")) as stack:
                services = build(load(stack.app_settings()))
                job_id, _ = send_request(services, raw, request)
                console.print(f"sent {EXAMPLE.name} through Service Bus: job [bold]{job_id}[/]")
                report = wait_for_job(services, job_id, request.task_count(), TIMEOUT_S)
                _print_walkthrough(console, services, job_id, report)
                show_status(services, job_id, report)
        except typer.Exit as exc:  # a subclass of RuntimeError: the step already said what failed
            return exc.exit_code or 1
        except Exception as exc:  # the demo's one job is to say clearly what failed
            console.print(f"[red]demo failed:[/] {exc}")
            return 1
    console.print(f"[green]demo finished in {time.monotonic() - started:.1f}s[/]")
    return 0


def _print_walkthrough(console: Console, services, job_id: str, report: dict) -> None:
    """Like the seed sample: per node, the shared file as the release task saw it (its stdout, read out of
    the node's bundle), and the exit codes."""
    for node in report.get("nodes") or []:
        try:
            opened = files.open_file(services.store, job_id, node["nodeId"], "job-1/jobrelease/stdout.txt")
            contents = opened.stream.read().decode(errors="replace")
            opened.close()
        except files.NotCollected:
            contents = "(release stdout not collected)"
        console.print(f"\n[bold]Node {node['nodeId']}[/]: prep exit code {node.get('prepExitCode')}, "
                      f"release exit code {node.get('releaseExitCode')}, tasks run {node.get('tasksRun')}")
        console.print("  job_prep_and_release.txt:")
        for line in contents.splitlines():
            console.print(f"    {line}")
    console.print()


if __name__ == "__main__":
    sys.exit(run_demo())
