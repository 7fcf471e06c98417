"""Application packages on a node: downloaded from the linked storage and unzipped once per node and version,
under `{node root}/applications/{applicationId}#{version}`, and named to tasks by environment variables.

"On Linux nodes ... Flatten periods (.), hyphens (-) and number signs (#) to underscores, and preserve the case
of the application ID": AZ_BATCH_APP_PACKAGE_blender_2_7 for version 2.7 of blender, and AZ_BATCH_APP_PACKAGE_blender
when the reference names no version and the default one is deployed
(https://learn.microsoft.com/azure/batch/batch-application-packages#execute-the-installed-applications).
A pool's references are deployed on every node as it joins and apply to every task on it; a task's own, before
the task starts. Pool references that do not resolve are refused at pool creation (409
InvalidApplicationPackageReferences); a task's fail the task.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import tempfile
import zipfile
from pathlib import Path

from local.batch.applications import Applications
from local.batch.errors import invalid_property
from local.batch.ids import fold
from local.batch.process import failure

_FLATTEN = re.compile(r"[.#-]")


def env_name(app_id: str, version: str | None) -> str:
    name = f"AZ_BATCH_APP_PACKAGE_{_FLATTEN.sub('_', app_id)}"
    return f"{name}_{_FLATTEN.sub('_', version)}" if version else name


def check_refs(name: str, refs) -> list[dict]:
    """[{applicationId, version?}]; a pool's ids may be ARM resource ids ending in /applications/{id}."""
    if refs is None:
        return []
    if not isinstance(refs, list):
        raise invalid_property(name, refs, "expected a list")
    out = []
    for ref in refs:
        app_id = ref.get("applicationId") if isinstance(ref, dict) else None
        if not isinstance(app_id, str) or not app_id:
            raise invalid_property(f"{name}.applicationId", ref, "each reference needs an applicationId")
        version = ref.get("version")
        if version is not None and not isinstance(version, str):
            raise invalid_property(f"{name}.version", version, "expected a string")
        out.append({"applicationId": app_id.rsplit("/", 1)[-1], **({"version": version} if version else {})})
    return out


def _unpack(apps: Applications, app_id: str, version: str, target: Path) -> None:
    """Download and unzip into a fresh folder beside the target, then move it in place in one rename."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".unpacking-", dir=target.parent))
    try:
        archive = staging / "package.zip"
        apps.download(app_id, version, archive)
        unpacked = staging / "files"
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                path = Path(zf.extract(info, unpacked))
                if not info.is_dir():
                    # Readable by every task, whichever account it runs as; executable when the zip says so
                    # (unzip keeps the bits; zipfile alone does not).
                    os.chmod(path, 0o755 if info.external_attr >> 16 & 0o111 else 0o644)
        unpacked.chmod(0o755)
        try:
            os.rename(unpacked, target)
        except OSError:
            if not target.is_dir():  # else another reference to the same version got there first
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


class PackageError(Exception):
    def __init__(self, info: dict):
        super().__init__(info["message"])
        self.info = info


class Packages:
    def __init__(self, apps: Applications):
        self.apps = apps

    async def environment(self, node, refs: list[dict]) -> dict[str, str] | dict:
        """The variables naming the referenced packages, deployed on the node first; or a failureInfo.

        A reference is resolved and deployed once per node (later tasks reuse it, so a pool's packages cost no
        storage call per task); one that failed is tried again by the next task."""
        env: dict[str, str] = {}
        for ref in refs:
            key = (fold(ref["applicationId"]), ref.get("version"))
            running = node.packages.get(key)
            if running is None:
                running = node.packages[key] = asyncio.ensure_future(self._deploy(node.root, ref))
            try:
                name, path = await asyncio.shield(running)
            except Exception as exc:  # not in the account, or storage or zip trouble
                if node.packages.get(key) is running:
                    del node.packages[key]
                return exc.info if isinstance(exc, PackageError) else failure(
                    "ApplicationPackageDeploymentFailed", f"Deploying {ref['applicationId']} on the node failed: "
                    f"{exc}"[:1024])
            env[name] = path
        return env

    def deploy_pool_packages(self, node, refs: list[dict], spawn) -> None:
        """A node joining a pool with packages starts deploying them at once."""
        if refs:
            spawn(self.environment(node, refs))

    async def _deploy(self, root: Path, ref: dict) -> tuple[str, str]:
        found = await asyncio.to_thread(self.apps.resolve, ref)
        if isinstance(found, dict):
            raise PackageError(found)
        app_id, version = found
        target = root / "applications" / f"{app_id}#{version}"
        if not target.is_dir():
            await asyncio.to_thread(_unpack, self.apps, app_id, version, target)
        return env_name(app_id, version if ref.get("version") else None), str(target)
