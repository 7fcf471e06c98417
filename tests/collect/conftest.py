import uuid

import pytest

from shared.adapters.blobs import BlobContainer


@pytest.fixture
def containers(azurite):
    """A fresh (job-logs, job-reports) pair per test, created with the collector's client settings."""
    suffix = uuid.uuid4().hex[:12]
    pair = []
    for name in (f"logs-{suffix}", f"reports-{suffix}"):
        client = BlobContainer.from_connection_string(azurite.connection_string, name)
        client.create()
        pair.append(client)
    yield tuple(pair)
    for client in pair:
        client.delete_container()
