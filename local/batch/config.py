"""Fixed development account and the emulator's settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from local.batch.versions import API_VERSION, SUPPORTED_API_VERSIONS  # noqa: F401 (re-exported)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8090
DEV_ACCOUNT_NAME = "devbatchaccount"
# Public development key, documented in the README. It only protects the local emulator.
DEV_ACCOUNT_KEY = "ZGV2YmF0Y2hhY2NvdW50LWxvY2FsLWVtdWxhdG9yLWtleS1ub3Qtc2VjcmV0LTAxMjM0NTY3ODk="

DEFAULT_ACTIVE_JOB_QUOTA = 300
MAX_TASKS_PER_COLLECTION = 100
PAGE_SIZE_DEFAULT = 1000


@dataclass(frozen=True)
class PoolSpec:
    """A pool to create at start-up: `id:nodes[:slots]` on the command line."""

    pool_id: str
    nodes: int = 2
    slots_per_node: int = 1

    @classmethod
    def parse(cls, text: str) -> PoolSpec:
        parts = text.split(":")
        if not 1 <= len(parts) <= 3 or not parts[0]:
            raise ValueError(f"pool spec {text!r}: expected ID[:NODES[:SLOTS]], e.g. pool-1:2:4")
        try:
            nodes = int(parts[1]) if len(parts) > 1 else 2
            slots = int(parts[2]) if len(parts) > 2 else 1
        except ValueError as exc:
            raise ValueError(f"pool spec {text!r}: NODES and SLOTS must be whole numbers") from exc
        if nodes < 0 or slots < 1:
            raise ValueError(f"pool spec {text!r}: NODES must be >= 0 and SLOTS >= 1")
        return cls(parts[0], nodes, slots)


@dataclass
class Faults:
    """Opt-in fault injection; changeable at run time through the emulator's control endpoint."""

    rate: float = 0.0
    statuses: tuple[int, ...] = (503,)
    latency_ms: float = 0.0
    retry_after_s: int = 1
    seed: int | None = None


@dataclass
class EmulatorConfig:
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    workspace: Path = field(default_factory=lambda: Path(".workspace/batch"))
    account_name: str = DEV_ACCOUNT_NAME
    account_key: str = DEV_ACCOUNT_KEY
    pools: list[PoolSpec] = field(default_factory=list)
    faults: Faults = field(default_factory=Faults)
    active_job_quota: int = DEFAULT_ACTIVE_JOB_QUOTA
    # Opt-in: setting onAllTasksComplete=terminatejob once every task is already complete does not end the
    # job. Batch's docs say it should (https://learn.microsoft.com/rest/api/batchservice/job/update, and
    # "Automatically terminate a job": https://learn.microsoft.com/azure/batch/batch-job-task-error-checking),
    # but users see jobs left active with all tasks done (Azure-Samples/azure-batch-samples#319); the
    # orchestrator's watchdog must end those.
    missed_completion: bool = False
    # Seconds a rebooting node stays in `rebooting` before it is idle again.
    reboot_seconds: float = 0.2
    # Serve https with the development certificate (local/batch/tls.py) and issue Entra ID tokens
    # (local/batch/entra.py); Shared Key keeps working either way.
    tls: bool = False
    identity_header: str | None = None
    # Run tasks as the accounts their userIdentity names (local/batch/identity.py): None switches when the
    # emulator runs as root; False runs every task as the emulator's own user.
    switch_users: bool | None = None
    # The linked storage holding application packages (local/batch/applications.py): a Blob connection string.
    app_storage: str | None = None
