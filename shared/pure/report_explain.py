"""Why a job ended as it did, in words, for the top of the report page: a deadline (which tasks were still
running or never started), preparation failures (which nodes, with the end of their stderr), tasks failed,
crashes (from dumps and from the backtraces tasks printed), and a collection still waiting. Returns
(css class, html) items, every value escaped and every text from a node redacted."""

from __future__ import annotations

from collections.abc import Mapping
from html import escape
from typing import Any

from shared.pure.redact import redact_secrets
from shared.pure.task_view import TaskView
from shared.pure.timefmt import show_time

TIMEOUT_REASONS = frozenset({"OrchestratorTimeout", "MaxWallClockTimeExpiry"})
MAX_IDS_IN_TEXT = 20


def _ids(ids: list[str], total: int) -> str:
    shown = ", ".join(f"<code>{escape(i)}</code>" for i in ids[:MAX_IDS_IN_TEXT])
    more = total - min(len(ids), MAX_IDS_IN_TEXT)
    return shown + (f" and {more} more" if more > 0 else "")


def _many(count: Any, one: str, more: str) -> str:
    """`1 task was` / `3 tasks were`: one and more are the words after the number."""
    return f"{escape(str(count))} {one if count == 1 else more}"


def _tail(lines: list[str]) -> str:
    text = "\n".join(redact_secrets(str(line)) for line in lines)
    return f"<pre>{escape(text)}</pre>" if text else ""


def _timeout(outcome: Mapping[str, Any], tasks: Mapping[str, Any], view: TaskView | None) -> str:
    reason = outcome.get("terminateReason")
    who = ("the orchestrator ended it at its deadline" if reason == "OrchestratorTimeout"
           else "Batch ended it when its maximum wall clock time passed")
    text = f"The job ran out of time: {who} ({escape(show_time(outcome.get('deadline') or outcome.get('endedAt')))})."
    if view is not None:
        if view.running_total:
            text += (f" {_many(view.running_total, 'task was', 'tasks were')} still running and stopped with the job: "
                     + _ids([b.task_id for b in view.running], view.running_total) + ".")
        if view.never_started_total:
            text += (f" {_many(view.never_started_total, 'task', 'tasks')} never started: "
                     + _ids(view.never_started, view.never_started_total) + ".")
    elif tasks.get("neverStarted"):
        text += f" {_many(tasks['neverStarted'], 'task', 'tasks')} never started."
    return text


def _prep_failures(nodes: list[Mapping[str, Any]]) -> list[str]:
    out = []
    for node in nodes:
        if node.get("prepResult") != "failure":
            continue
        output = node.get("prepOutput") or {}
        exit_code = node.get("prepExitCode")
        what = (f"Preparation failed on node <code>{escape(str(node.get('nodeId')))}</code>"
                + (f" with exit code {escape(str(exit_code))}" if exit_code is not None else "")
                + (f" ({escape(redact_secrets(str(node.get('prepFailure'))))})" if node.get("prepFailure") else "")
                + ": Batch runs none of the job's tasks on a node whose preparation failed.")
        if output.get("message"):
            what += f" Batch said: {escape(redact_secrets(str(output['message'])).rstrip('. '))}."
        if output.get("stderrTail"):
            what += " The end of its stderr:" + _tail(output["stderrTail"])
        elif output.get("stdoutTail"):
            what += " The end of its stdout:" + _tail(output["stdoutTail"])
        out.append(what)
    return out


def explain(report: Mapping[str, Any], view: TaskView | None) -> list[tuple[str, str]]:
    outcome = report.get("outcome") or {}
    tasks = report.get("tasks") or {}
    nodes = report.get("nodes") or []
    reason = outcome.get("terminateReason")
    items: list[tuple[str, str]] = []
    if not outcome:
        return [("muted", "The job has not ended yet (no outcome recorded): this page shows what was collected so "
                          "far.")]
    if reason in TIMEOUT_REASONS:
        items.append(("bad", _timeout(outcome, tasks, view)))
    prep = _prep_failures(nodes)
    if reason == "PrepTaskFailed":
        items.append(("bad", "The job was ended because its preparation task failed on every node of the pool, so "
                             "no task could run." + (f" {_many(tasks['neverStarted'], 'task', 'tasks')} never started."
                                                     if tasks.get("neverStarted") else "")))
    items += [("bad", text) for text in prep]
    failed = (tasks.get("failedTotal") or 0) - (view.running_total if view is not None else 0)
    if failed > 0:
        items.append(("bad", f"{_many(failed, 'task', 'tasks')} failed: see Failed tasks below for "
                             f"{'its exit code and first error lines' if failed == 1 else 'their exit codes and first error lines'}."))
    crashes = (report.get("totals") or {}).get("crashDumps")
    if crashes:
        items.append(("bad", f"{_many(crashes, 'crash dump was', 'crash dumps were')} collected: see Crash dumps below."))
    listed = tasks.get("failed") or []
    traced = sum(1 for t in listed if (t.get("backtrace") or {}).get("frame"))
    if traced:
        # Only the listed failed tasks carry their backtrace: past the list, the count would be a guess.
        of = f"Of the {len(listed)} failed tasks listed, " if (tasks.get("failedTotal") or 0) > len(listed) else ""
        who = _many(traced, "failed task", "failed tasks") if not of else _many(traced, "task", "tasks")
        items.append(("bad", f"{of}{who} printed a backtrace: see Crashes in task logs below for where "
                             f"{'it' if traced == 1 else 'they'} crashed."))
    if reason == "AllTasksComplete" and not tasks.get("failedTotal") and not prep and not crashes:
        items.append(("ok", "Every task completed successfully."))
    if not report.get("collectionComplete"):
        waiting = (report.get("collection") or {}).get("waitingFor") or []
        items.append(("muted", "Logs are still being collected" + (
            " from " + ", ".join(f"<code>{escape(str(n))}</code>" for n in waiting[:10]) if waiting else "") + "."))
    return items
