"""Fixtures of the Batch emulator's own tests."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from pathlib import Path

import azure.batch.models as m
import pytest


@pytest.fixture
def make_pool(batch_client):
    """make_pool(nodes, slots, **options) -> the id of a fresh pool, deleted after the test."""
    made = []

    def make(nodes: int, slots: int = 1, **options) -> str:
        pool_id = f"p{nodes}x{slots}-{uuid.uuid4().hex[:8]}"
        batch_client.create_pool(m.BatchPoolCreateOptions(id=pool_id, vm_size="standard_d2s_v3",
                                                          target_dedicated_nodes=nodes, task_slots_per_node=slots,
                                                          **options))
        made.append(pool_id)
        return pool_id

    yield make
    for pool_id in made:
        batch_client.begin_delete_pool(pool_id, polling_interval=0.1).result()


@pytest.fixture
def scratch():
    """A folder every account may write to, for the markers and gates tasks share with the test: tasks run as
    unprivileged accounts when the emulator runs as root, and pytest's tmp_path is closed to them."""
    folder = Path(tempfile.mkdtemp(prefix="batch-test-"))
    os.chmod(folder, 0o777)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)
