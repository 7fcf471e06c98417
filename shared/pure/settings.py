"""App settings the function app reads, in one place, so a missing one fails at start-up by name.

Locally the connections are connection strings and keys; in Azure they are identity-based
(`<Connection>__fullyQualifiedNamespace`, `<Connection>__accountName`, DefaultAzureCredential for Batch).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

# Container and queue names are part of the contract (docs/DESIGN.md), not settings.
LOGS_CONTAINER = "job-logs"
REPORTS_CONTAINER = "job-reports"
TOOLS_CONTAINER = "tools"
# Requests as they were sent (SAS URLs included): the app reads them, operators do not.
REQUESTS_CONTAINER = "job-requests-private"

# Names the bindings reference: `%JOB_REQUESTS_QUEUE%`, `%WATCHDOG_SCHEDULE%`, connection prefixes.
SERVICE_BUS_CONNECTION = "ServiceBusConnection"
STORAGE_CONNECTION = "AzureWebJobsStorage"
QUEUE_SETTING = "JOB_REQUESTS_QUEUE"
SCHEDULE_SETTING = "WATCHDOG_SCHEDULE"
DEFAULT_QUEUE = "job-requests"
DEFAULT_SCHEDULE = "0 */1 * * * *"

BATCH_ACCOUNT_URL = "BATCH_ACCOUNT_URL"
BATCH_ACCOUNT_NAME = "BATCH_ACCOUNT_NAME"
BATCH_ACCOUNT_KEY = "BATCH_ACCOUNT_KEY"  # local emulator only; Azure uses the app's managed identity
ALLOWED_POOLS = "ALLOWED_POOLS"  # comma list; empty allows any pool that exists
JOB_RETENTION_DAYS = "JOB_RETENTION_DAYS"
MAX_SUBMIT_CONCURRENCY = "MAX_SUBMIT_CONCURRENCY"
# Retries inside one invocation; past them the message is abandoned and Service Bus redelivers it.
BATCH_MAX_RETRIES = "BATCH_MAX_RETRIES"
# The Batch pool's user-assigned identity. When set, nodes upload logs with it instead of a SAS URL
# placed in the job's definition (readable by anyone who can read the job).
POOL_IDENTITY_CLIENT_ID = "POOL_IDENTITY_CLIENT_ID"
POOL_IDENTITY_RESOURCE_ID = "POOL_IDENTITY_RESOURCE_ID"

# Every setting an app may read, with whether Azure must set it (used by the infra consistency tests).
APP_SETTINGS = {
    BATCH_ACCOUNT_URL: True,
    QUEUE_SETTING: True,
    SCHEDULE_SETTING: True,
    f"{SERVICE_BUS_CONNECTION}__fullyQualifiedNamespace": True,
    f"{STORAGE_CONNECTION}__accountName": True,
    ALLOWED_POOLS: False,
    JOB_RETENTION_DAYS: False,
    MAX_SUBMIT_CONCURRENCY: False,
    BATCH_MAX_RETRIES: False,
    POOL_IDENTITY_CLIENT_ID: False,
    POOL_IDENTITY_RESOURCE_ID: False,
}


class MissingSetting(RuntimeError):
    def __init__(self, name: str, hint: str):
        super().__init__(f"app setting {name} is missing: {hint}")
        self.name = name


@dataclass(frozen=True)
class PoolIdentity:
    """The pool's user-assigned managed identity, as nodes and Batch refer to it."""

    client_id: str  # the uploader asks the node's metadata endpoint for a token with it
    resource_id: str  # Batch's own outputFiles uploads name it in identityReference


@dataclass(frozen=True)
class Settings:
    batch_url: str
    batch_account: str | None
    batch_key: str | None
    storage_connection: str | None
    storage_account: str | None
    storage_blob_uri: str | None
    service_bus_connection: str | None
    service_bus_namespace: str | None
    queue: str
    allowed_pools: frozenset[str]
    retention: timedelta
    submit_concurrency: int
    batch_max_retries: int
    pool_identity: PoolIdentity | None = None


def _int(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = env.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError:
        raise MissingSetting(name, f"expected a whole number, got {raw!r}") from None
    if not low <= value <= high:
        raise MissingSetting(name, f"must be between {low} and {high}, got {value}")
    return value


def load(env: Mapping[str, str]) -> Settings:
    batch_url = env.get(BATCH_ACCOUNT_URL)
    if not batch_url:
        raise MissingSetting(BATCH_ACCOUNT_URL, "set it to the Batch account endpoint, e.g. "
                             "https://<account>.<region>.batch.azure.com (or the emulator's BATCH_URL)")
    storage = env.get(STORAGE_CONNECTION)
    storage_account = env.get(f"{STORAGE_CONNECTION}__accountName")
    if not storage and not storage_account:
        raise MissingSetting(STORAGE_CONNECTION, f"set {STORAGE_CONNECTION} (connection string) or "
                             f"{STORAGE_CONNECTION}__accountName (identity-based)")
    key = env.get(BATCH_ACCOUNT_KEY) or None
    if key and not env.get(BATCH_ACCOUNT_NAME):
        raise MissingSetting(BATCH_ACCOUNT_NAME, f"{BATCH_ACCOUNT_KEY} is set, so the account name is needed too")
    pools = frozenset(p.strip() for p in env.get(ALLOWED_POOLS, "").split(",") if p.strip())
    client_id, resource_id = env.get(POOL_IDENTITY_CLIENT_ID) or "", env.get(POOL_IDENTITY_RESOURCE_ID) or ""
    if bool(client_id) != bool(resource_id):
        present, absent, what = ((POOL_IDENTITY_CLIENT_ID, POOL_IDENTITY_RESOURCE_ID, "resource") if client_id
                                 else (POOL_IDENTITY_RESOURCE_ID, POOL_IDENTITY_CLIENT_ID, "client"))
        raise MissingSetting(absent, f"{present} is set, so the identity's {what} id is needed too (both come "
                             "from the pool's user-assigned identity)")
    return Settings(
        batch_url=batch_url.rstrip("/"),
        batch_account=env.get(BATCH_ACCOUNT_NAME) or None,
        batch_key=key,
        storage_connection=storage or None,
        storage_account=storage_account or None,
        storage_blob_uri=env.get(f"{STORAGE_CONNECTION}__blobServiceUri") or None,
        service_bus_connection=env.get(SERVICE_BUS_CONNECTION) or None,
        service_bus_namespace=env.get(f"{SERVICE_BUS_CONNECTION}__fullyQualifiedNamespace") or None,
        queue=env.get(QUEUE_SETTING) or DEFAULT_QUEUE,
        allowed_pools=pools,
        retention=timedelta(days=_int(env, JOB_RETENTION_DAYS, 7, 1, 180)),
        submit_concurrency=_int(env, MAX_SUBMIT_CONCURRENCY, 8, 1, 64),
        batch_max_retries=_int(env, BATCH_MAX_RETRIES, 3, 0, 10),
        pool_identity=PoolIdentity(client_id, resource_id) if client_id else None,
    )
