"""Per test: a fresh container behind the blob events proxy."""

from __future__ import annotations

import uuid

import pytest


@pytest.fixture
def container(events_blob_service):
    return events_blob_service.create_container(f"ev-{uuid.uuid4().hex[:12]}")


@pytest.fixture
def subject_prefix(container) -> str:
    return f"/blobServices/default/containers/{container.container_name}/blobs/"
