"""`orchestrator`: bring the local stack up, submit job requests, and look at jobs.

Against the local stack the CLI reads the endpoints `orchestrator up` wrote to .data/endpoints.json.
Against Azure it reads the same app settings as the function app from the environment
(BATCH_ACCOUNT_URL, ServiceBusConnection__fullyQualifiedNamespace, AzureWebJobsStorage__accountName)
and signs in with DefaultAzureCredential (`az login`).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import threading
import time
import uuid
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from local.stack import ENDPOINTS_FILE, Stack, StackOptions
from shared.adapters.services import Services, build
from shared.flows import files
from shared.pure import metadata, retry
from shared.pure.blob_layout import node_record_name, rejection_prefix
from shared.pure.report import is_final
from shared.pure.request import JobRequest, RequestInvalid, derive_job_id, parse_request, request_hash
from shared.pure.settings import MissingSetting, load

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)

# Exit codes of `submit --wait`, for scripts and CI.
EXIT_OK, EXIT_NOT_FINISHED, EXIT_BAD_REQUEST, EXIT_STILL_COLLECTING = 0, 1, 2, 3
EXIT_TASKS_FAILED, EXIT_JOB_DID_NOT_COMPLETE, EXIT_REJECTED, EXIT_DEAD_LETTERED = 4, 5, 6, 7


def plain(value) -> Text:
    """A value that came from a node, a task or a request, shown as it is: never read as rich markup
    (a log line like `cannot open [/data/x]` would be taken for a closing tag)."""
    return Text("" if value is None else str(value))


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


def _collection_line(report: dict | None) -> tuple[int, int | None]:
    """(nodes collected, nodes expected or None while Batch has not said)."""
    collection = (report or {}).get("collection") or {}
    expected = collection.get("expectedNodes")
    without = set(collection.get("nodesWithoutManifest") or [])
    return collection.get("collectedNodes", 0), (len(set(expected) - without) if expected is not None else None)


def _of(done: int, total: int | None) -> str:
    return f"{done} of {total if total is not None else '?'}"


def wait_for_job(s: Services, job_id: str, expected: int, timeout: float) -> dict:
    """Live progress: the job's tasks, then the collection of its nodes, until the report is complete.

    Exit codes (scripts may rely on them): EXIT_NOT_FINISHED the job did not finish in time,
    EXIT_STILL_COLLECTING the job finished but its collection was still running."""
    deadline = time.monotonic() + timeout
    report: dict | None = None
    finished = False
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=False) as progress:
        bar = progress.add_task(f"{job_id}: waiting for Batch", total=expected)
        nodes_bar = None
        while True:  # at least one look, however short the wait
            job = s.batch.get_job(job_id)
            if job is not None and not finished:
                counts = s.batch.task_counts(job_id)
                progress.update(bar, completed=counts.completed,
                                description=f"{job_id}: tasks {job.state}, {counts.running} running, "
                                            f"{counts.failed} failed")
                finished = job.state == "completed"
            if finished or job is None:
                # The report is only worth reading once Batch says the job is over.
                report = s.store.report(job_id)
                done, total = _collection_line(report)
                if is_final(report):
                    if nodes_bar is not None:
                        progress.update(nodes_bar, completed=done, total=total or done,
                                        description=f"{job_id}: collected {done} of {total} nodes")
                    return report
                if nodes_bar is None:
                    nodes_bar = progress.add_task(f"{job_id}: collecting nodes", total=total)
                progress.update(nodes_bar, completed=done, total=total,
                                description=f"{job_id}: collecting {_of(done, total)} nodes")
            if time.monotonic() >= deadline:
                break
            time.sleep(0.5)
    if finished or (report and report.get("outcome")):
        done, total = _collection_line(report)
        err.print(f"[yellow]{job_id}: job finished, collection still running[/] ({_of(done, total)} "
                  f"nodes collected after {timeout:.0f}s). "
                  f"See `orchestrator status {job_id}` later.")
        raise typer.Exit(EXIT_STILL_COLLECTING)
    err.print(f"[red]{job_id} did not finish within {timeout:.0f}s.[/] See `orchestrator status {job_id}`; "
              "rejected requests: `orchestrator rejected`.")
    raise typer.Exit(EXIT_NOT_FINISHED)


def _hash_of(job) -> str | None:
    meta = metadata.decode_or_none(job.metadata)
    return meta.request_hash if meta else None


def follow_message(s: Services, job_id: str, message_id: str, digest: str, timeout: float) -> None:
    """Wait until the message sent becomes our job, or is rejected, or is dead-lettered (each ends the
    command with its exit code, saying why)."""
    deadline = time.monotonic() + timeout
    with console.status(f"waiting for the orchestrator to take message {message_id}"):
        checks = 0
        while True:
            job = s.batch.get_job(job_id)
            if job is not None and _hash_of(job) == digest:
                return
            rejected = s.store.rejected(rejection_prefix(message_id))
            if rejected:
                err.print(f"[red]rejected:[/] {escape(rejected[-1]['reason'])}")
                raise typer.Exit(EXIT_REJECTED)
            if checks % 10 == 9:  # peeking the dead-letter queue costs more: now and then
                reason = s.queue.dead_lettered(message_id, retry.ORIGINAL_ID)
                if reason:
                    err.print(f"[red]dead-lettered:[/] {reason}. The orchestrator kept failing on it (see its logs); "
                              "the message is in job-requests/$DeadLetterQueue.")
                    raise typer.Exit(EXIT_DEAD_LETTERED)
            checks += 1
            if time.monotonic() >= deadline:
                err.print(f"[red]message {message_id} was not taken within {timeout:.0f}s[/]: is the orchestrator "
                          "running (`orchestrator up`, or the function app)?")
                raise typer.Exit(EXIT_NOT_FINISHED)
            time.sleep(0.5)


def _verdict(report: dict) -> int:
    """0 when every task succeeded; otherwise say what did not."""
    outcome = report.get("outcome") or {}
    tasks = report.get("tasks") or {}
    if outcome.get("terminateReason") != "AllTasksComplete":
        err.print(f"[red]the job ended with {outcome.get('terminateReason')}[/], not with all its tasks complete")
        return EXIT_JOB_DID_NOT_COMPLETE
    if tasks.get("failedTotal"):
        err.print(f"[red]{tasks['failedTotal']} tasks failed[/] (see the failed tasks above)")
        return EXIT_TASKS_FAILED
    return EXIT_OK


@app.command()
def submit(file: Path = typer.Argument(..., exists=True, dir_okay=False, help="job request JSON"),
           wait: bool = typer.Option(False, "--wait", help="follow the request to its job and end with the report"),
           timeout: float = typer.Option(900, help="seconds to wait with --wait")) -> None:
    """Validate a job request locally and send it to the job-requests queue.

    Exit codes with --wait: 0 every task succeeded and the report is complete; 1 not finished in time;
    2 the request is not valid (nothing sent) or setup is missing; 3 finished, logs still being collected;
    4 tasks failed; 5 the job ended otherwise (deadline, preparation failed); 6 the request was rejected
    (the reason is printed); 7 it was dead-lettered."""
    raw = file.read_bytes()
    try:
        request = parse_request(raw)
    except RequestInvalid as exc:
        err.print("[red]The request is not valid; nothing was sent.[/]")
        for problem in exc.errors:
            err.print(escape(f"  {problem['field']}: {problem['message']} [{problem['rule']}]"))
        raise typer.Exit(EXIT_BAD_REQUEST) from None
    s = _services()
    digest = request_hash(request)
    existing = s.batch.get_job(request.job_id) if request.job_id else None
    if existing is not None and _hash_of(existing) == digest:
        console.print(f"already submitted: job [bold]{request.job_id}[/] exists with this same request")
        job_id = request.job_id
    else:
        job_id, message_id = send_request(s, raw, request)
        console.print(f"sent: job [bold]{job_id}[/] (message {message_id})")
        if wait:
            follow_message(s, job_id, message_id, digest, timeout)
    if wait:
        report = wait_for_job(s, job_id, request.task_count(), timeout)
        show_status(s, job_id, report)
        raise typer.Exit(_verdict(report))


def _exit_text(code, result) -> str:
    return "-" if code is None and result is None else f"{code}" + (f" ({result})" if result and result != "success"
                                                                     else "")


def show_status(s: Services, job_id: str, report: dict | None = None) -> None:
    """report: the job's report when the caller already has it. Reads report.json and two Batch calls."""
    job = s.batch.get_job(job_id)
    report = report or s.store.report(job_id) or {}
    if job is None and not report:
        rejected = [r for r in s.store.rejected() if r.get("jobId") == job_id]
        if rejected:
            console.print(f"[red]{job_id} was rejected:[/] {escape(rejected[-1]['reason'])}")
            return
        err.print(f"[red]No job {job_id!r}[/]: not in Batch and no report. Check the id, or `orchestrator rejected`.")
        raise typer.Exit(1)
    if job is not None:
        counts = s.batch.task_counts(job_id).as_dict()
        console.print(f"[bold]{job_id}[/]: {job.state}"
                      + (f", ended: {job.terminate_reason}" if job.terminate_reason else ""))
        console.print("tasks: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    else:
        outcome = report.get("outcome") or {}
        console.print(f"[bold]{job_id}[/]: deleted from Batch; from the report (ended: {outcome.get('terminateReason')})")
    if not report:
        console.print("no report yet: the nodes upload their logs when the job ends")
        return
    table = Table("node", "status", "prep exit", "release exit", "tasks", "failed", "files", "error lines",
                  "crash dumps", title="nodes")
    for node in report.get("nodes") or []:
        table.add_row(plain(node["nodeId"]), plain(node.get("status", "")),
                      _exit_text(node.get("prepExitCode"), node.get("prepResult")),
                      _exit_text(node.get("releaseExitCode"), node.get("releaseResult")),
                      str(node.get("tasksRun", "-")), str(node.get("tasksFailed", "-")), str(node.get("files", "-")),
                      str(node.get("errorLines", "-")),
                      str(node.get("crashDumpCount", 0 if node.get("status") == "collected" else "-")))
    console.print(table)
    tasks = report.get("tasks") or {}
    failed = tasks.get("failed") or []
    if failed:
        listing = Table("task", "node", "exit", "retries", "first error line", title=f"failed tasks "
                        f"({len(failed)} of {tasks.get('failedTotal')} shown)")
        for task in failed[:50]:
            listing.add_row(plain(task["id"]), plain(task.get("nodeId")), str(task.get("exitCode")),
                            str(task.get("retries")), plain((task.get("excerpt") or [""])[0]))
        console.print(listing)
    groups = report.get("crashGroups") or []
    if groups:
        crashes = Table("count", "format", "executable", "signal/exception", "where", "nodes", title="crash groups")
        for g in groups:
            crashes.add_row(str(g["count"]), plain(g.get("format")), plain(g.get("executable")),
                            plain(g.get("signalName") or g.get("exceptionCode")), plain(g.get("location")),
                            plain(", ".join(g.get("nodes") or [])))
        console.print(crashes)
    totals = report.get("totals") or {}
    console.print(f"files {totals.get('files', 0)}, {totals.get('bytes', 0)} bytes, error lines "
                  f"{totals.get('errorLines', 0)}; collection complete: {report.get('collectionComplete')}"
                  + (f"; refused uploads: {totals['refused']}" if totals.get("refused") else ""))


@app.command()
def status(job_id: str) -> None:
    """Job state, task counts, per node the prep/release results, failed tasks and crash groups."""
    show_status(_services(), job_id)


@app.command()
def logs(job_id: str, node: str = typer.Option(None, help="only this node"),
         file: str = typer.Option(None, "--file", help="one file, by its path in the listing: fetched out of the "
                                  "node's bundle with ranged reads (to stdout, or into --download)"),
         download: Path = typer.Option(None, help="with --file, write it here; without, download the nodes' "
                                       "bundles (zip) and crash dumps (gzip) here")) -> None:
    """List the collected files of a job (from its index), or fetch one, or download a node's uploads.

    Exit codes: 0 done, 1 nothing collected (yet) for what was asked, 2 the path is on several nodes."""
    s = _services()
    try:
        if file:
            _fetch_one(s, job_id, node, file, download)
        elif download:
            _download_uploads(s, job_id, node, download)
        else:
            _list_files(s, job_id, node)
    except files.NotCollected as exc:
        err.print(f"[red]{exc}[/]")
        raise typer.Exit(1) from None


def _list_files(s: Services, job_id: str, node: str | None) -> None:
    table = Table(title=f"collected files of {job_id}")
    for column in ("node", "file"):
        table.add_column(column, overflow="fold")
    for column in ("size", "lines", "error lines"):
        table.add_column(column, justify="right")
    count = 0
    for f in files.index(s.store, job_id, node):
        count += 1
        table.add_row(plain(f.node_id), plain(f.path + (f"  (was {f.original})" if f.original else "")), str(f.size),
                      str(f.lines),
                      str(f.error_lines))
    console.print(table)
    if not count:
        console.print(f"no collected files for {job_id}" + (f" on {node}" if node else "") + " yet")


def _fetch_one(s: Services, job_id: str, node: str | None, path: str, target_dir: Path | None) -> None:
    if node is None:
        where = sorted({f.node_id for f in files.find(s.store, job_id, path)})
        if not where:
            raise files.NotCollected(f"{path!r} is in no collected node's index of job {job_id!r}")
        if len(where) > 1:
            err.print(f"[yellow]{path!r} is on {len(where)} nodes ({', '.join(where[:5])}...): pass --node[/]")
            raise typer.Exit(2)
        node = where[0]
    opened = files.open_file(s.store, job_id, node, path)
    try:
        if target_dir is None:
            shutil.copyfileobj(opened.stream, sys.stdout.buffer)
            sys.stdout.buffer.flush()
        else:
            target = _inside(target_dir, node, path)
            if target is None:
                err.print(f"[red]{path!r} would land outside {target_dir}[/]")
                raise typer.Exit(1)
            with open(target, "wb") as out:
                shutil.copyfileobj(opened.stream, out)
            console.print(f"wrote {target}")
    finally:
        opened.close()
    err.print(f"[dim]{opened.size} bytes of {node}'s {opened.bundle_size}-byte bundle, in {opened.reader.requests} "
              "ranged reads[/]")


def _inside(root: Path, *names: str) -> Path | None:
    """Where a stored name lands under root, its folder made; None if it would land outside root."""
    target = root.joinpath(*names).resolve()
    if not target.is_relative_to(root.resolve()):
        return None
    target.parent.mkdir(parents=True, exist_ok=True)
    return target


def _download_uploads(s: Services, job_id: str, node: str | None, target_dir: Path) -> None:
    count = 0
    for node_id in [node] if node else files.collected_nodes(s.store, job_id):
        record = s.store.reports.read_json(node_record_name(job_id, node_id)) or {}
        blobs = [p["blob"] for p in (record.get("bundle") or {}).get("parts", [])]
        blobs += [p["blob"] for d in record.get("crashDumps") or [] for p in d.get("parts") or [d]]
        for name in blobs:
            target = _inside(target_dir, name)
            if target is None:
                err.print(f"[yellow]skipped {name!r}: it would land outside {target_dir}[/]")
                continue
            with open(target, "wb") as fh:
                s.store.logs.download_to(name, fh)
            count += 1
    if not count:
        raise files.NotCollected(f"nothing collected for {job_id}" + (f" on {node}" if node else "") + " yet")
    console.print(f"downloaded {count} files into {target_dir} (bundles are zip files, crash dumps gzip)")


@app.command()
def rejected() -> None:
    """Rejected requests with their reasons (kept under job-reports/rejected/)."""
    records = _services().store.rejected()
    table = Table("when", "job", "reason", title=f"{len(records)} rejected requests")
    for record in records:
        table.add_row(plain(record.get("rejectedAt", "")), plain(record.get("jobId") or "-"),
                      plain(record.get("reason", "")))
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
