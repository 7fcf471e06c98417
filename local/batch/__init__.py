"""A local Azure Batch service: the Batch REST API (2025-06-01) over HTTP, tasks run as local processes.

Like Azurite's devstoreaccount1, the development account below is fixed and public: it exists so that
the unmodified azure-batch SDK can sign requests against the emulator. Never use it for anything else.
"""

from local.batch.config import (
    API_VERSION,
    DEFAULT_HOST,
    DEFAULT_PORT,
    DEV_ACCOUNT_KEY,
    DEV_ACCOUNT_NAME,
    EmulatorConfig,
    PoolSpec,
)

__all__ = [
    "API_VERSION",
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "DEV_ACCOUNT_KEY",
    "DEV_ACCOUNT_NAME",
    "EmulatorConfig",
    "PoolSpec",
]
