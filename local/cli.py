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
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table
from rich.text import Text

from local.stack import Stack, StackOptions
from local.stack_control import (
    PORT_FLAGS,
    StackLock,
    data_dir,
    detach_output,
    endpoints_file,
    port_problem,
    start_failure_text,
)
from shared.adapters.services import Services, build
from shared.flows import files
from shared.flows.reports import job_report
from shared.pure import metadata, retry
from shared.pure.blob_layout import node_record_name, rejection_prefix
from shared.pure.report import is_final
from shared.pure.request import JobRequest, RequestInvalid, derive_job_id, parse_request, request_hash
from shared.pure.settings import MissingSetting, load
from shared.pure.timefmt import show_duration, show_time

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__, rich_markup_mode=None)

# Exit codes of `submit --wait`, for scripts and CI.
EXIT_OK, EXIT_NOT_FINISHED, EXIT_BAD_REQUEST, EXIT_STILL_COLLECTING = 0, 1, 2, 3
EXIT_TASKS_FAILED, EXIT_JOB_DID_NOT_COMPLETE, EXIT_REJECTED, EXIT_DEAD_LETTERED = 4, 5, 6, 7
EXIT_INTERRUPTED = 130  # Ctrl-C while waiting: the shell's convention, 128 + SIGINT

# Service Bus standard tier: "Maximum message size: 256 KB", which "includes the size of properties (system
# and user) and the size of payload" (https://learn.microsoft.com/azure/service-bus-messaging/service-bus-quotas).
MAX_MESSAGE_BYTES = 256 * 1024
# Room for the message's own properties: its id and content type, and the lineage the submit function adds
# when it schedules the same request again (throttling, the job quota).
PROPERTIES_ROOM = 4 * 1024
MAX_REQUEST_BYTES = MAX_MESSAGE_BYTES - PROPERTIES_ROOM


def plain(value) -> Text:
    """A value that came from a node, a task or a request, shown as it is: never read as rich markup
    (a log line like `cannot open [/data/x]` would be taken for a closing tag)."""
    return Text("" if value is None else str(value))


def _port(value: int) -> int:
    if not 0 <= value <= 65535:
        raise typer.BadParameter(f"{value} is not a port: a port is 1 to 65535 (0 picks a free one)")
    return value


class _Console(Console):
    def on_broken_pipe(self) -> None:
        """Rich exits with 1 when its reader went away (`| tee` ended by the same Ctrl-C); `up` must still
        stop its children and end with its own code, so the rest of the output goes to /dev/null instead."""
        self.quiet = True
        detach_output()


def make_console(stderr: bool = False) -> Console:
    """A console that does not fold blob paths when output goes to a file or CI log (rich assumes 80
    columns there); COLUMNS still wins when set."""
    stream = sys.stderr if stderr else sys.stdout
    wide = None if stream.isatty() or os.environ.get("COLUMNS") else 160
    return _Console(stderr=stderr, width=wide)


console = make_console()
err = make_console(stderr=True)


def _services() -> Services:
    env = dict(os.environ)
    if not env.get("BATCH_ACCOUNT_URL"):
        endpoints = endpoints_file()
        if not endpoints.exists():
            err.print("[red]No orchestrator to talk to.[/] Start the local stack with `orchestrator up` "
                      "(in another terminal), or set BATCH_ACCOUNT_URL, ServiceBusConnection__fullyQualifiedNamespace "
                      "and AzureWebJobsStorage__accountName to use Azure.")
            raise typer.Exit(2)
        env.update(json.loads(endpoints.read_text()))
    try:
        return build(load(env))
    except MissingSetting as exc:
        err.print(f"[red]{escape(str(exc))}[/]")
        raise typer.Exit(2) from None


# ----- the local stack -------------------------------------------------------------------------------

@app.command()
def up(http_port: int = typer.Option(7071, callback=_port, help="port of the dev host's HTTP functions"),
       batch_port: int = typer.Option(8090, callback=_port, help="port of the Batch emulator"),
       servicebus_port: int = typer.Option(5672, callback=_port, help="port of the Service Bus emulator (AMQP)"),
       pool: str = typer.Option("demo-pool:2:1", help="pool to create: ID:NODES[:SLOTS]")) -> None:
    """Start Azurite, the Batch and Service Bus emulators and the dev host; Ctrl-C stops them all.

    Exit codes: 0 stopped (Ctrl-C, SIGTERM, SIGHUP); 1 a part did not start; 2 a port is in use, or
    another `orchestrator up` runs on this folder."""
    lock = StackLock(data_dir())
    if not lock.acquire():
        err.print(f"[red]orchestrator up is already running[/] ({escape(lock.holder())}): use it as it is, or stop "
                  "it with Ctrl-C in its terminal first.")
        raise typer.Exit(2)
    try:
        for port, flag in zip((http_port, batch_port, servicebus_port), PORT_FLAGS.values(), strict=True):
            problem = port_problem(port, flag)
            if problem:
                err.print(f"[red]{escape(problem)}[/]")
                raise typer.Exit(2)
        raise typer.Exit(_run_stack(lock, StackOptions(workdir=data_dir() / "local", http_port=http_port,
                                                       batch_port=batch_port, servicebus_port=servicebus_port,
                                                       pool=pool)))
    finally:
        lock.release()


def _run_stack(lock: StackLock, options: StackOptions) -> int:
    stack = Stack(options, progress=lambda m: _say(f"[dim]{escape(m)}[/]"))
    stop = threading.Event()
    # Ctrl-C reaches the children too (one process group); stop() then ends whatever is left, Azurite
    # included (it runs in its own session), in reverse order.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda *_: stop.set())
    try:
        try:
            stack.start()
        except (RuntimeError, TimeoutError, OSError) as exc:  # a part did not start, or Azurite is not installed
            if stop.is_set():  # Ctrl-C during start-up: the parts died of it, nothing failed
                return EXIT_OK
            err.print(f"[red]{escape(start_failure_text(exc))}[/]")
            return 1
        stack.write_endpoints(endpoints_file())
        lock.note(f"pid {os.getpid()}, functions at {stack.host_url}")
        table = Table("part", "address", title="Batch Orchestrator, local stack")
        table.add_row("functions (dev host)", stack.host_url)
        table.add_row("Batch emulator", stack.batch_endpoint.url)
        table.add_row("Service Bus emulator", stack.servicebus_connection.split(";")[0])
        table.add_row("Azurite blob", stack.azurite.blob_endpoint)
        console.print(table)
        console.print("Submit with `orchestrator submit examples/job-request.json --wait`. Ctrl-C stops everything.")
        stop.wait()
        return EXIT_OK
    finally:
        # The children stop first: after a hang-up the terminal is gone and any print may fail (EIO).
        _say("[dim]stopping...[/]")
        stack.stop()
        endpoints_file().unlink(missing_ok=True)
        _say("[dim]stopped[/]")


def _say(text: str) -> None:
    """Print, or go quiet for good once the output is gone (a closed terminal answers EIO, not EPIPE)."""
    try:
        console.print(text)
    except OSError:
        console.quiet = True
        detach_output()


@app.command()
def reset(yes: bool = typer.Option(False, "--yes", help="do not ask for confirmation")) -> None:
    """Delete the local stack's state (queued messages, blobs, Batch node folders, logs) under the data folder.

    Exit codes: 0 deleted (or nothing to delete); 1 not confirmed; 2 `orchestrator up` is running."""
    folder = data_dir()
    lock = StackLock(folder)
    if not lock.acquire():
        err.print(f"[red]orchestrator up is running[/] ({escape(lock.holder())}): stop it with Ctrl-C first.")
        raise typer.Exit(2)
    try:
        state = folder / "local"
        if not state.exists():
            console.print(f"nothing to reset: {state} does not exist")
            return
        if not yes and not typer.confirm(f"Delete {state}: every local job, report, queued message and log?"):
            err.print("nothing deleted")
            raise typer.Exit(1)
        shutil.rmtree(state)
        endpoints_file().unlink(missing_ok=True)
        console.print(f"deleted {state}; `orchestrator up` starts from nothing")
    finally:
        lock.release()


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


def _running_for(job, started: float, now: Callable[[], datetime], clock: Callable[[], float]) -> str:
    """How long the job has run: from Batch's creation time (a job followed again, after `already
    submitted`, has been running longer than this command), else since the wait began."""
    created = getattr(job, "creation_time", None)
    seconds = (now() - created).total_seconds() if created else clock() - started
    return show_duration(max(seconds, 0))


def wait_for_job(s: Services, job_id: str, expected: int, timeout: float,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC),
                 clock: Callable[[], float] = time.monotonic) -> dict:
    """Live progress: the job's tasks, then the collection of its nodes, until the report is complete.

    Exit codes (scripts may rely on them): EXIT_NOT_FINISHED the job did not finish in time,
    EXIT_STILL_COLLECTING the job finished but its collection was still running."""
    started = clock()
    deadline = started + timeout
    report: dict | None = None
    finished = False
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  console=console, transient=False) as progress:
        bar = progress.add_task(f"{job_id}: waiting for Batch", total=expected)
        nodes_bar = None
        while True:  # at least one look, however short the wait
            job = s.batch.get_job(job_id)
            if job is not None and not finished:
                counts = s.batch.task_counts(job_id)
                finished = job.state == "completed"
                progress.update(bar, completed=counts.completed,
                                description=f"{job_id}: tasks {job.state}, {counts.running} running, "
                                            f"{counts.failed} failed, for {_running_for(job, started, now, clock)}")
            if finished or job is None:
                # The report is only worth reading once Batch says the job is over.
                report = s.store.report(job_id)
                done, total = _collection_line(report)
                if nodes_bar is None:
                    nodes_bar = progress.add_task("collecting logs", total=total)
                progress.update(nodes_bar, completed=done, total=total if total is not None else None,
                                description=f"collecting logs: {_of(done, total)} nodes")
                if is_final(report):
                    return report
            if clock() >= deadline:
                break
            time.sleep(0.5)
    if finished or (report and report.get("outcome")):
        done, total = _collection_line(report)
        err.print(f"[yellow]{job_id}: job finished, collection still running[/] ({_of(done, total)} "
                  f"nodes collected after {show_duration(timeout)}). "
                  f"See `orchestrator status {job_id}` later.")
        raise typer.Exit(EXIT_STILL_COLLECTING)
    err.print(f"[red]{job_id} did not finish within {show_duration(timeout)}.[/] It keeps running: see "
              f"`orchestrator status {job_id}`; rejected requests: `orchestrator rejected`.")
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


def size_problem(raw: bytes) -> str | None:
    """A request too big for one Service Bus message, said before it is sent (the SDK would raise
    MessageSizeExceededError), with how to make it smaller."""
    if len(raw) <= MAX_REQUEST_BYTES:
        return None
    return (f"the request is {len(raw) / 1024:.0f} KB; a Service Bus message holds at most "
            f"{MAX_MESSAGE_BYTES // 1024} KB (standard tier), its properties included, so a request may be at most "
            f"{MAX_REQUEST_BYTES // 1024} KB. Describe the tasks with `taskFactory` (a parametric sweep: one "
            "command line with {0} for the task's number, up to 100,000 tasks) instead of listing each in "
            "`tasks`, and move large environment values or inputs into `resourceFiles`.")


@app.command()
def submit(file: Path = typer.Argument(..., exists=True, dir_okay=False, help="job request JSON"),
           wait: bool = typer.Option(False, "--wait", help="follow the request to its job and end with the report"),
           timeout: float = typer.Option(900, help="seconds to wait with --wait")) -> None:
    """Validate a job request locally and send it to the job-requests queue.

    Exit codes with --wait: 0 every task succeeded and the report is complete; 1 not finished in time;
    2 the request is not valid (nothing sent) or setup is missing; 3 finished, logs still being collected;
    4 tasks failed; 5 the job ended otherwise (deadline, preparation failed); 6 the request was rejected
    (the reason is printed); 7 it was dead-lettered; 130 interrupted (Ctrl-C: the job keeps running)."""
    raw = file.read_bytes()
    try:
        request = parse_request(raw)
    except RequestInvalid as exc:
        err.print("[red]The request is not valid; nothing was sent.[/]")
        for problem in exc.errors:
            err.print(plain(f"  {problem['field']}: {problem['message']} [{problem['rule']}]"))
        raise typer.Exit(EXIT_BAD_REQUEST) from None
    too_big = size_problem(raw)
    if too_big:
        err.print("[red]The request is too big; nothing was sent.[/]")
        err.print(plain(too_big))
        raise typer.Exit(EXIT_BAD_REQUEST)
    s = _services()
    digest = request_hash(request)
    existing = s.batch.get_job(request.job_id) if request.job_id else None
    job_id = request.job_id
    try:
        if existing is not None and _hash_of(existing) == digest:
            console.print(Text.assemble("already submitted: job ", (job_id, "bold"), " exists with this same "
                                        "request; nothing was sent" + ("" if wait else
                                                                       f" (follow it: orchestrator status {job_id})")))
        else:
            job_id, message_id = send_request(s, raw, request)
            console.print(Text.assemble("sent: job ", (job_id, "bold"), f" (message {message_id})"))
            if wait:
                follow_message(s, job_id, message_id, digest, timeout)
        if wait:
            report = wait_for_job(s, job_id, request.task_count(), timeout)
            show_status(s, job_id, report)
            raise typer.Exit(_verdict(report))
    except KeyboardInterrupt:
        err.print(f"\n[yellow]stopped waiting[/]: job {escape(job_id or '')} keeps running (Ctrl-C only stops "
                  f"this command). Follow it with `orchestrator status {escape(job_id or '')}`, or wait again with "
                  f"`orchestrator submit {escape(str(file))} --wait` (the same request is not sent twice).")
        raise typer.Exit(EXIT_INTERRUPTED) from None


def _exit_text(code, result) -> str:
    return "-" if code is None and result is None else f"{code}" + (f" ({result})" if result and result != "success"
                                                                     else "")


def deleted_job_line(report: dict) -> str:
    """What status says of a job Batch no longer has but whose report is kept."""
    outcome = report.get("outcome") or {}
    if not outcome:
        return "not in Batch (deleted, or never created); what its report holds:"
    ended = outcome.get("terminateReason") or outcome.get("state") or "unknown"
    return (f"deleted from Batch after the retention period; from its report: {outcome.get('state') or 'completed'}"
            f", ended: {ended}, created {show_time(outcome.get('createdAt'))}, ended {show_time(outcome.get('endedAt'))}")


def show_status(s: Services, job_id: str, report: dict | None = None) -> None:
    """report: the job's report when the caller already has it. Reads report.json and two Batch calls."""
    job = s.batch.get_job(job_id)
    report = report or job_report(s.store, job_id) or {}
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
        console.print(Text.assemble((job_id, "bold"), ": ", deleted_job_line(report)))
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
        listing = Table("task", "node", "exit", "retries", "crashed at", "first error line", title=f"failed tasks "
                        f"({len(failed)} of {tasks.get('failedTotal')} shown)")
        for task in failed[:50]:
            listing.add_row(plain(task["id"]), plain(task.get("nodeId")), str(task.get("exitCode")),
                            str(task.get("retries")), plain((task.get("backtrace") or {}).get("frame") or ""),
                            plain((task.get("excerpt") or [""])[0]))
        console.print(listing)
    groups = report.get("crashGroups") or []
    if groups:
        crashes = Table("count", "format", "executable", "signal/exception", "where", "nodes", title="crash groups")
        for g in groups:
            crashes.add_row(str(g["count"]), plain(g.get("format")), plain(g.get("executable")),
                            plain(g.get("signalName") or g.get("exceptionCode")),
                            plain((g.get("backtrace") or {}).get("frame") or g.get("location")),
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

    Exit codes: 0 done, 1 nothing collected (yet) for what was asked, 2 the path is on several nodes, or
    --download names a folder that cannot be made or written."""
    s = _services()
    try:
        if file:
            _fetch_one(s, job_id, node, file, download)
        elif download:
            _download_uploads(s, job_id, node, download)
        else:
            _list_files(s, job_id, node)
    except files.NotCollected as exc:
        err.print(plain(str(exc)), style="red")
        raise typer.Exit(1) from None
    except CannotWrite as exc:
        err.print(plain(str(exc)), style="red")
        raise typer.Exit(2) from None


class CannotWrite(OSError):
    """A download's target cannot be made or written: said in words, with exit code 2 (a bad path)."""


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
            with _writing(target) as out:
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
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CannotWrite(f"cannot write into {root}: {exc.strerror or exc} ({exc.filename or target.parent}); "
                          "pass --download a folder you can create") from None
    return target


def _writing(target: Path):
    """The target opened for writing; only the open is blamed on the path (a failed download is not)."""
    try:
        return open(target, "wb")  # noqa: SIM115 - the caller's with closes it
    except OSError as exc:
        raise CannotWrite(f"cannot write {target}: {exc.strerror or exc}") from None


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
            with _writing(target) as fh:
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
        table.add_row(plain(show_time(record.get("rejectedAt"))), plain(record.get("jobId") or "-"),
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
