"""Application packages as Batch has them: applications, each with versions, each version a zip in the account's
linked storage (https://learn.microsoft.com/azure/batch/batch-application-packages).

The emulator's linked storage is a Blob service given by connection string (`--app-storage`, Azurite locally).
One container holds every package:

    batch-applications/{applicationId}/{version}.zip      a version (Batch takes .zip only)
    batch-applications/{applicationId}/application.json   {"displayName": ..., "defaultVersion": ...}

Batch's management plane (creating applications, uploading and activating packages) is not emulated; a package
is added with `python -m local.batch add-package --storage CONN --app ID --version V --zip FILE [--default]`,
or by putting the two blobs above in place. Ids are case-insensitive, as Batch's; versions follow Batch's rule
(letters, digits, `_`, `-`, `.`, not starting with `.`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
from pathlib import Path

from local.batch.errors import BatchError, not_found
from local.batch.ids import fold
from local.batch.process import failure

CONTAINER = "batch-applications"
APP_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
VERSION = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}$")
INFO = "application.json"


class Applications:
    """The account's applications, read from the linked storage on each question (it is local and small)."""

    def __init__(self, connection_string: str | None):
        self.connection_string = connection_string

    def _container(self):
        from azure.storage.blob import BlobServiceClient

        return BlobServiceClient.from_connection_string(self.connection_string).get_container_client(CONTAINER)

    def all(self) -> dict[str, dict]:
        """Folded id -> {id, displayName, versions, defaultVersion}."""
        if not self.connection_string:
            return {}
        from azure.core.exceptions import ResourceNotFoundError

        container = self._container()
        apps: dict[str, dict] = {}
        try:
            for blob in container.list_blobs():
                app_id, _, name = blob.name.partition("/")
                app = apps.setdefault(fold(app_id), {"id": app_id, "displayName": app_id, "versions": [],
                                                     "defaultVersion": None})
                if name == INFO:
                    info = json.loads(container.download_blob(blob.name).readall() or b"{}")
                    app["displayName"] = info.get("displayName") or app_id
                    app["defaultVersion"] = info.get("defaultVersion")
                elif name.endswith(".zip"):
                    app["versions"].append(name[:-len(".zip")])
        except ResourceNotFoundError:  # no package added yet
            return {}
        return {key: app for key, app in apps.items() if app["versions"]}

    def wire(self, app: dict) -> dict:
        return {"id": app["id"], "displayName": app["displayName"], "versions": sorted(app["versions"])}

    def get(self, app_id: str) -> dict:
        app = self.all().get(fold(app_id))
        if app is None:
            raise not_found("Application", app_id)
        return app

    def resolve(self, ref: dict, apps: dict | None = None) -> tuple[str, str] | dict:
        """(application id, version) for a package reference, or the task's failureInfo when there is none: "If
        this is omitted on a Task, and no default version is specified for this application, the Task fails with
        a pre-processing error" (https://learn.microsoft.com/rest/api/batchservice/task/add#applicationpackagereference)."""
        app = (apps if apps is not None else self.all()).get(fold(ref.get("applicationId") or ""))
        version = ref.get("version")
        if app is None:
            return failure("ApplicationPackageNotFound", f"The application {ref.get('applicationId')!r} is not in the "
                           "account" + ("" if self.connection_string else " (the emulator has no --app-storage)"))
        if version is None:
            version = app["defaultVersion"]
            if version is None:
                return failure("ApplicationPackageNotFound", f"The application {app['id']!r} has no default version "
                               "and the reference names none.")
        if version not in app["versions"]:
            return failure("ApplicationPackageNotFound", f"The application {app['id']!r} has no version {version!r}.")
        return app["id"], version

    def check_pool_refs(self, refs: list[dict]) -> None:
        """A pool's references must all resolve: 409 InvalidApplicationPackageReferences otherwise."""
        apps = self.all()  # one read of the registry for all of them
        for ref in refs:
            found = self.resolve(ref, apps)
            if isinstance(found, dict):
                raise BatchError(409, "InvalidApplicationPackageReferences", "One or more of the specified "
                                 "application package references are invalid.", Reason=found["message"])

    def download(self, app_id: str, version: str, target: Path) -> None:
        with open(target, "wb") as out:
            self._container().download_blob(f"{app_id}/{version}.zip").readinto(out)


def add_package(connection_string: str, app_id: str, version: str, zip_path: Path, default: bool,
                display_name: str | None) -> None:
    """Upload a version's zip; --default (or a first version) makes it the application's default version."""
    from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
    from azure.storage.blob import BlobServiceClient

    if not APP_ID.fullmatch(app_id):
        raise ValueError(f"application id {app_id!r}: letters, digits, '-' and '_', at most 64")
    if not VERSION.fullmatch(version):
        raise ValueError(f"version {version!r}: letters, digits, '_', '-' and '.', not starting with '.'")
    if zip_path.read_bytes()[:4] != b"PK\x03\x04":
        raise ValueError(f"{zip_path}: Batch application packages are .zip files only")
    container = BlobServiceClient.from_connection_string(connection_string).get_container_client(CONTAINER)
    with contextlib.suppress(ResourceExistsError):
        container.create_container()
    try:
        info = json.loads(container.download_blob(f"{app_id}/{INFO}").readall())
    except ResourceNotFoundError:
        info = {}
    with open(zip_path, "rb") as data:
        container.upload_blob(f"{app_id}/{version}.zip", data, overwrite=True)
    if default or not info.get("defaultVersion"):
        info["defaultVersion"] = version
    if display_name:
        info["displayName"] = display_name
    container.upload_blob(f"{app_id}/{INFO}", json.dumps(info).encode(), overwrite=True)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m local.batch add-package",
                                     description="Add an application package version to the emulator's linked storage.")
    parser.add_argument("--storage", required=True, help="the Blob storage connection string (Azurite's locally)")
    parser.add_argument("--app", required=True, help="application id")
    parser.add_argument("--version", required=True, help="package version")
    parser.add_argument("--zip", required=True, type=Path, help="the package: a .zip file")
    parser.add_argument("--default", action="store_true", help="make it the application's default version")
    parser.add_argument("--display-name", default=None)
    args = parser.parse_args(argv)
    try:
        add_package(args.storage, args.app, args.version, args.zip, args.default, args.display_name)
    except (ValueError, OSError) as exc:
        parser.error(str(exc))
    print(f"added {args.app} {args.version} to {CONTAINER}")
