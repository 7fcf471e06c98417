"""Where a task runs and what it sees: Batch's node directory layout and its AZ_BATCH_* variables.

Tasks written for Batch find their files through these paths and variables, so they follow Batch's
layout exactly; the emulator's own variables (keys, tokens) are deliberately not passed on.
"""

from __future__ import annotations

import os

from local.batch.config import EmulatorConfig
from local.batch.model import Job, Node

PREP_ID = "jobpreparation"
RELEASE_ID = "jobrelease"
BASE_ENV_KEYS = ("PATH", "LANG", "LC_ALL", "TZ", "TMPDIR", "PYTHONPATH", "SYSTEMROOT")
NODE_DIRS = ("shared", "startup", "workitems", "applications", "fsmounts")


def task_rel_dir(job_id: str, task_id: str) -> str:
    """A task's directory, relative to its node's root, as Batch lays it out."""
    return f"workitems/{job_id}/job-1/{task_id}"


def node_env(config: EmulatorConfig, base_url: str, node: Node) -> dict[str, str]:
    """The part of a task's environment that is the same for every task on the node."""
    root = str(node.root)
    env = {k: os.environ[k] for k in BASE_ENV_KEYS if k in os.environ}
    env.update({
        "AZ_BATCH_ACCOUNT_NAME": config.account_name,
        "AZ_BATCH_ACCOUNT_URL": base_url,
        "AZ_BATCH_POOL_ID": node.pool_id,
        "AZ_BATCH_NODE_ID": node.id,
        "AZ_BATCH_NODE_IS_DEDICATED": "true" if node.dedicated else "false",
        "AZ_BATCH_NODE_ROOT_DIR": root,
        "AZ_BATCH_NODE_SHARED_DIR": f"{root}/shared",
        "AZ_BATCH_NODE_STARTUP_DIR": f"{root}/startup",
        "AZ_BATCH_NODE_MOUNTS_DIR": f"{root}/fsmounts",
        "PATH": f"{env.get('PATH', '/usr/bin:/bin')}:{root}/shared",
    })
    return env


def task_env(job: Job, node: Node, task_id: str, task_dir: str, wd: str, own: list | None) -> dict:
    env = dict(node.env)
    env.update({
        "AZ_BATCH_JOB_ID": job.id,
        "AZ_BATCH_TASK_ID": task_id,
        "AZ_BATCH_TASK_DIR": task_dir,
        "AZ_BATCH_TASK_WORKING_DIR": wd,
        "HOME": wd,
        "PWD": wd,
        "PATH": f"{env['PATH']}:{wd}",
    })
    if job.prep_spec is not None:
        prep_dir = f"{node.root}/{task_rel_dir(job.id, job.prep_spec.get('id', PREP_ID))}"
        env["AZ_BATCH_JOB_PREP_DIR"] = prep_dir
        env["AZ_BATCH_JOB_PREP_WORKING_DIR"] = f"{prep_dir}/wd"
    for item in (job.spec.get("commonEnvironmentSettings") or []) + (own or []):
        env[item["name"]] = item.get("value") or ""
    return env
