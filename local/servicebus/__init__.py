"""Local Azure Service Bus emulator: an AMQP 1.0 broker the unmodified azure-servicebus SDK talks to.

Run it with ``python -m local.servicebus``; see README.md in this folder.
"""

from __future__ import annotations

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5672
DEFAULT_DATA_DIR = ".data/servicebus"
DEV_KEY_NAME = "RootManageSharedAccessKey"
# Fixed and public, like Azurite's devstoreaccount1 key: it protects nothing, it only lets the
# SDK's SAS signing run exactly as it does against Azure.
DEV_KEY = "YmF0Y2gtb3JjaGVzdHJhdG9yIGxvY2FsIHNlcnZpY2VidXMgZGV2"


def connection_string(host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, key: str = DEV_KEY) -> str:
    """The string to hand to ServiceBusClient.from_connection_string for the local emulator."""
    return (
        f"Endpoint=sb://{host}:{port};SharedAccessKeyName={DEV_KEY_NAME};"
        f"SharedAccessKey={key};UseDevelopmentEmulator=true;"
    )


__all__ = ["DEFAULT_DATA_DIR", "DEFAULT_HOST", "DEFAULT_PORT", "DEV_KEY", "DEV_KEY_NAME", "connection_string"]
