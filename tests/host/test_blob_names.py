"""Blob names storage can return but HTTP clients or XML mangle: each runs once, and none stalls the rest."""

from __future__ import annotations

import logging

from local.host.blob_trigger import receipt_name
from tests.fixtures.azurite import put_verbatim
from tests.host.conftest import read_records
from tests.waiting import wait_until


def test_mangled_names_run_once_and_an_unlistable_one_stalls_only_its_folder(
        app_dir, start_host, records, blob_service, container_name, caplog):
    container = blob_service.create_container(container_name)
    runnable = ["ok/a.txt", "j1/../x.txt", "j2/line\nbreak.txt", "j4/fine.txt"]
    for name in runnable:
        put_verbatim(container, name, b"x")
    # Azurite answers 500 to every listing that would hold this name (Azure would send it encoded).
    container.upload_blob("j3/ctl\x01.txt", b"x")

    caplog.set_level(logging.INFO, logger="local.host")
    host = start_host(app_dir, "blob_seen")
    wait_until(lambda: len(read_records(records, "blob_seen")) >= len(runnable), timeout=30,
               what="every listable blob to run")
    listener = host._listeners[0]
    wait_until(lambda: len(listener.done) == len(runnable), timeout=10, what="their receipts to be written")
    host.stop()
    names = sorted(r["name"] for r in read_records(records, "blob_seen"))
    assert names == sorted(f"{container_name}/{n}" for n in runnable), "each exactly once"
    unlistable = [r for r in caplog.records if getattr(r, "folder", None) is not None]
    assert [r.folder for r in unlistable] == ["j3/"], "logged once, for its own folder only"


def test_receipt_names_are_the_blob_name_unless_storage_cannot_hold_it():
    assert receipt_name("job/node/manifest.json") == "job/node/manifest.json"
    assert receipt_name("dir with space/ü.txt") == "dir with space/ü.txt"
    mapped = {receipt_name(n) for n in ["a/../b", "a/./b", "a//b", "a/\x01", "a/\uffff", "a/\n"]}
    assert len(mapped) == 6 and all(m.startswith("~mapped/") and len(m) == 8 + 64 for m in mapped)
