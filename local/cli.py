"""`orchestrator`: bring the local stack up, submit job requests, and look at jobs.

Against the local stack the CLI reads the endpoints `orchestrator up` wrote to .data/endpoints.json.
Against Azure it reads the same app settings as the function app from the environment
(BATCH_ACCOUNT_URL, ServiceBusConnection__fullyQualifiedNamespace, AzureWebJobsStorage__accountName)
and signs in with DefaultAzureCredential (`az login`).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
import uuid
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from local.stack import ENDPOINTS_FILE, Stack, StackOptions
from shared.adapters.services import Services, build
from shared.pure.report import node_rows
from shared.pure.request import JobRequest, RequestInvalid, derive_job_id, parse_request
from shared.pure.settings import MissingSetting, load

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)


def make_console(stderr: bool = False) -> Console:
    """A console that does not fold blob paths when output goes to a file or CI log (rich assumes 80
    columns there); COLUMNS still wins when set."""
    stream = sys.stderr if stderr else sys.stdout
    wide = None if stream.isatty() or os.environ.get("COLUMNS") else 160
    return Console(stderr=stderr, width=wide)


console = make_console()
err = make_console(stderr=True)


def _services() -> Services:
    env = dict(os.environ)
    if not env.get("BATCH_ACCOUNT_URL"):
        if not ENDPOINTS_FILE.exists():
            err.print("[red]No orchestrator to talk to.[/] Start the local stack with `orchestrator up` "
                      "(in another terminal), or set BATCH_ACCOUNT_URL, ServiceBusConnection__fullyQualifiedNamespace "
                      "and AzureWebJobsStorage__accountName to use Azure.")
            raise typer.Exit(2)
        env.update(json.loads(ENDPOINTS_FILE.read_text()))
    try:
        return build(load(env))
    except MissingSetting as exc:
        err.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from None


@app.command()
def up(http_port: int = typer.Option(7071, help="port of the dev host's HTTP functions"),
       pool: str = typer.Option("demo-pool:2:1", help="pool to create: ID:NODES[:SLOTS]")) -> None:
    """Start Azurite, the Batch and Service Bus emulators and the dev host; Ctrl-C stops them all."""
    stack = Stack(StackOptions(http_port=http_port, pool=pool), progress=lambda m: console.print(f"[dim]{m}[/]"))
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        stack.start()
    except RuntimeError as exc:
        err.print(f"[red]{exc}[/]\nA port may be in use: see README, Troubleshooting.")
        raise typer.Exit(1) from None
    try:
        stack.write_endpoints()
        table = Table("part", "address", title="Batch Orchestrator, local stack")
        table.add_row("functions (dev host)", stack.host_url)
        table.add_row("Batch emulator", stack.batch_endpoint.url)
        table.add_row("Service Bus emulator", stack.servicebus_connection.split(";")[0])
        table.add_row("Azurite blob", stack.azurite.blob_endpoint)
        console.print(table)
        console.print("Submit with `orchestrator submit examples/job-request.json --wait`. Ctrl-C stops everything.")
        stop.wait()
    finally:
        console.print("[dim]stopping...[/]")
        stack.stop()
        ENDPOINTS_FILE.unlink(missing_ok=True)


def send_request(s: Services, raw: bytes, request: JobRequest) -> tuple[str, str]:
    """Send a request the caller has validated to the queue; returns (job id, message id)."""
    message_id = uuid.uuid4().hex
    job_id = request.job_id or derive_job_id(message_id)
    s.queue.send(raw, message_id)
    return job_id, message_id


def wait_for_job(s: Services, job_id: str, expected: int, timeout: float) -> dict:
    """Live progress of the job's tasks until it completes and its report is collected."""
    deadline = time.monotonic() + timeout
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=False) as progress:
        bar = progress.add_task(f"{job_id}: waiting for Batch", total=expected)
        while time.monotonic() < deadline:
            job = s.batch.get_job(job_id)
            if job is not None:
                counts = s.batch.task_counts(job_id)
                progress.update(bar, completed=counts.completed,
                                description=f"{job_id}: {job.state}, {counts.running} running, "
                                            f"{counts.failed} failed")
                # The report is only worth reading once Batch says the job is over.
                if job.state == "completed" and (report := s.store.report(job_id)) and report.get(
                        "outcome") and report.get("collectionComplete"):
                    return report
            time.sleep(0.5)
    err.print(f"[red]{job_id} did not finish within {timeout:.0f}s.[/] See `orchestrator status {job_id}`; "
              "rejected requests: `orchestrator rejected`.")
    raise typer.Exit(1)


@app.command()
def submit(file: Path = typer.Argument(..., exists=True, dir_okay=False, help="job request JSON"),
           wait: bool = typer.Option(False, "--wait", help="show progress and end with the report"),
           timeout: float = typer.Option(900, help="seconds to wait with --wait")) -> None:
    """Validate a job request locally and send it to the job-requests queue."""
    raw = file.read_bytes()
    try:
        request = parse_request(raw)
    except RequestInvalid as exc:
        err.print("[red]The request is not valid; nothing was sent.[/]")
        for problem in exc.errors:
            err.print(f"  {problem['field']}: {problem['message']} [{problem['rule']}]")
        raise typer.Exit(2) from None
    s = _services()
    job_id, message_id = send_request(s, raw, request)
    console.print(f"sent: job [bold]{job_id}[/] (message {message_id})")
    if wait:
        show_status(s, job_id, wait_for_job(s, job_id, request.task_count(), timeout))


def show_status(s: Services, job_id: str, report: dict | None = None) -> None:
    """report: the job's report when the caller already has it."""
    job = s.batch.get_job(job_id)
    report = report or s.store.report(job_id) or {}
    if job is None and not report:
        rejected = [r for r in s.store.rejected() if r.get("jobId") == job_id]
        if rejected:
            console.print(f"[red]{job_id} was rejected:[/] {rejected[-1]['reason']}")
            return
        err.print(f"[red]No job {job_id!r}[/]: not in Batch and no report. Check the id, or `orchestrator rejected`.")
        raise typer.Exit(1)
    if job is not None:
        counts = s.batch.task_counts(job_id).as_dict()
        console.print(f"[bold]{job_id}[/]: {job.state}"
                      + (f", ended: {job.terminate_reason}" if job.terminate_reason else ""))
        console.print("tasks: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
        nodes = node_rows(s.batch.node_runs(job_id), s.batch.tasks(job_id))
    else:
        console.print(f"[bold]{job_id}[/]: deleted from Batch; from the report")
        nodes = report.get("nodes") or []
    table = Table("node", "prep exit", "release exit", "tasks", title="nodes")
    for node in nodes:
        table.add_row(node["nodeId"], str(node.get("prepExitCode")), str(node.get("releaseExitCode")),
                      ", ".join(t["id"] for t in node.get("tasks") or []))
    console.print(table)
    files = Table(title="collected logs")
    for column in ("node", "file"):
        files.add_column(column, overflow="fold")
    for column in ("size", "lines", "error lines"):
        files.add_column(column, justify="right")
    for f in report.get("files") or []:
        files.add_row(f.get("nodeId", ""), f.get("path", "").removeprefix("logs/"), str(f.get("size", "")),
                      str(f.get("lines", "")), str(f.get("errorLines", "")))
    console.print(files)
    dumps = report.get("crashDumps") or []
    if dumps:
        crashes = Table("node", "file", "format", "executable", "signal/exception", "fingerprint", title="crash dumps")
        for d in dumps:
            crashes.add_row(d.get("nodeId", ""), d.get("path", ""), str(d.get("format")), str(d.get("executable")),
                            str(d.get("signalName") or d.get("exceptionCode")), str(d.get("fingerprint", ""))[:16])
        console.print(crashes)
    if report:
        console.print(f"collection complete: {report.get('collectionComplete')}")


@app.command()
def status(job_id: str) -> None:
    """Job state, task counts, per node the prep/release exit codes and tasks, and the collected files."""
    show_status(_services(), job_id)


@app.command()
def logs(job_id: str, node: str = typer.Option(None, help="only this node"),
         download: Path = typer.Option(None, help="download the files into this folder")) -> None:
    """List (or download) the logs and crash dumps the release tasks uploaded."""
    s = _services()
    prefix = f"{job_id}/{node}/" if node else f"{job_id}/"
    table = Table("blob", "size")
    count = 0
    for blob in s.store.logs.list(prefix):
        count += 1
        table.add_row(blob.name, str(blob.size))
        if download:
            target = (download / blob.name).resolve()
            if not target.is_relative_to(download.resolve()):
                err.print(f"[yellow]skipped {blob.name!r}: it would land outside {download}[/]")
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(target, "wb") as fh:
                s.store.logs.download_to(blob.name, fh)
    console.print(table)
    if not count:
        console.print(f"no files under job-logs/{prefix} yet: release tasks upload when the job ends")
    elif download:
        console.print(f"downloaded {count} files into {download}")


@app.command()
def rejected() -> None:
    """Rejected requests with their reasons (kept under job-reports/rejected/)."""
    records = _services().store.rejected()
    table = Table("when", "job", "reason", title=f"{len(records)} rejected requests")
    for record in records:
        table.add_row(record.get("rejectedAt", ""), str(record.get("jobId") or "-"), record.get("reason", ""))
    console.print(table)


@app.command()
def demo() -> None:
    """Run the seed walk-through end to end on a throwaway local stack."""
    from local.demo import run_demo

    raise typer.Exit(run_demo(console))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
