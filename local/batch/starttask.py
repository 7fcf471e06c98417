"""Pool start tasks: run on each node when it joins the pool and again after every reboot.

As Batch does (https://learn.microsoft.com/rest/api/batchservice/pool/add#starttask): with waitForSuccess (the
default) the node is `waitingforstarttask` while the start task runs and takes no tasks; if the start task fails
after its retries the node is `starttaskfailed` and stays out of scheduling. Without waitForSuccess the node
takes tasks at once. The start task's files live under the node's startup/ folder (stdout.txt, stderr.txt, wd/).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from local.batch import process, transfer
from local.batch.errors import invalid_property
from local.batch.identity import check_identity
from local.batch.model import Execution, Node
from local.batch.state import AccountState
from local.batch.wire import name_values, now, optional

log = logging.getLogger("local.batch")
START_KEYS = frozenset({"commandLine", "resourceFiles", "environmentSettings", "userIdentity", "maxTaskRetryCount",
                        "waitForSuccess", "containerSettings"})


def start_task_spec(body) -> dict | None:
    """Check a pool's startTask; None when it has none."""
    if body is None:
        return None
    if not isinstance(body, dict):
        raise invalid_property("startTask", body, "expected an object")
    if body.get("containerSettings"):
        raise invalid_property("startTask.containerSettings", "", "containers are not supported by the emulator")
    command = body.get("commandLine")
    if not isinstance(command, str) or not command.strip():
        raise invalid_property("startTask.commandLine", command, "the start task needs a command line")
    spec = {k: v for k, v in body.items() if k in START_KEYS and v is not None}
    spec["environmentSettings"] = name_values("startTask.environmentSettings", body.get("environmentSettings"))
    retries = optional(body, "maxTaskRetryCount", int, 0)
    if retries < -1:
        raise invalid_property("startTask.maxTaskRetryCount", retries, "must be -1 (unlimited) or non-negative")
    spec["maxTaskRetryCount"] = retries
    spec["waitForSuccess"] = optional(body, "waitForSuccess", bool, True)
    identity = check_identity("startTask.userIdentity", body.get("userIdentity"))
    if identity is not None:
        spec["userIdentity"] = identity
    return spec


class StartTasks:
    def __init__(self, state: AccountState, executor):
        self.state = state
        self.executor = executor

    def boot(self, node: Node, spec: dict | None) -> None:
        """The node joined its pool or came back from a reboot: run its start task, if the pool has one."""
        if spec is None:
            node.set_state("running" if node.running else "idle")
            self.state.wake()
            return
        node.start_info = Execution(start_time=now())
        node.start_state = "running"
        node.set_state("waitingforstarttask" if spec["waitForSuccess"] else "idle")
        self.state.spawn(self._run(node, spec, node.generation))
        self.state.wake()

    async def _run(self, node: Node, spec: dict, generation: int) -> None:
        info = node.start_info
        folder = node.root / "startup"
        wd = folder / "wd"
        retries = spec["maxTaskRetryCount"]
        while True:
            outcome = await self._attempt(node, spec, folder, wd)
            if node.generation != generation:
                return  # rebooted meanwhile: the boot after the reboot runs it again
            if outcome.failure is None or (0 <= retries <= info.retry_count):
                break
            info.retry_count += 1
            info.last_retry_time = now()
        info.end_time = now()
        info.exit_code = outcome.exit_code
        info.failure = outcome.failure
        node.start_state = "completed"
        if outcome.failure is not None:
            log.info("start task failed", extra={"node": node.id, "pool": node.pool_id})
            if spec["waitForSuccess"]:
                node.set_state("starttaskfailed")
        elif node.state == "waitingforstarttask":
            node.set_state("idle")
        self.state.wake()

    async def _attempt(self, node: Node, spec: dict, folder: Path, wd: Path) -> process.Outcome:
        os.makedirs(wd, exist_ok=True)
        try:
            await transfer.download_resource_files(spec.get("resourceFiles") or [], wd)
        except transfer.TransferError as err:
            return process.Outcome(None, err.info)
        env = dict(node.env)
        env.update({"AZ_BATCH_TASK_DIR": str(folder), "AZ_BATCH_TASK_WORKING_DIR": str(wd), "HOME": str(wd),
                    "PWD": str(wd), "PATH": f"{env['PATH']}:{wd}"})
        for item in spec.get("environmentSettings") or []:
            env[item["name"]] = item["value"]
        pool = self.state.pools.get(node.pool_id)
        refs = (pool.spec if pool else {}).get("applicationPackageReferences") or []
        if refs:  # the pool's packages are on the node before its start task runs
            packages = await self.state.packages.environment(node, refs)
            if "code" in packages:
                return process.Outcome(None, packages)
            env.update(packages)
        who = self.state.identities.run_as(spec.get("userIdentity"), (pool.spec if pool else {}).get(
            "userAccounts") or [], node.pool_id)
        if isinstance(who, dict):
            return process.Outcome(None, who)
        key = ("#pool", "#start", node.id)
        started = await node.agent.start_command(spec["commandLine"], str(wd), env, [str(folder), str(wd)],
                                                 str(folder / "stdout.txt"), str(folder / "stderr.txt"), who.uid,
                                                 who.gid, own_tree=bool(spec.get("resourceFiles")))
        self.executor.track(key, started)
        try:
            return await process.wait(started, None)
        finally:
            self.executor.untrack(key, started)
