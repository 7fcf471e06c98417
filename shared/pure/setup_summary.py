"""How a job's tasks were set up, in words for its report: who each kind of task ran as, the application
packages it used, how long Batch kept its files, and what waited for what. From the request as saved
(secrets already redacted); a 100,000-task sweep counts as one kind of task."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

BATCH_DEFAULT_IDENTITY = "non-admin auto-user (pool), Batch's default"
BATCH_DEFAULT_RETENTION = "P7D, Batch's default"


def runs_as(identity: Mapping[str, Any] | None) -> str:
    if not identity:
        return BATCH_DEFAULT_IDENTITY
    if identity.get("userName"):
        return f"user account {identity['userName']!s} of the pool"
    auto = identity.get("autoUser") or {}
    level = "admin" if auto.get("elevationLevel") == "admin" else "non-admin"
    return f"{level} auto-user ({auto.get('scope') or 'pool'})"


def _packages(refs: Any) -> list[str]:
    return [f"{r.get('applicationId')} {r.get('version') or '(default version)'}" for r in refs or []
            if isinstance(r, Mapping)]


def _kind(spec: Mapping[str, Any], count: int) -> dict[str, Any]:
    out: dict[str, Any] = {"tasks": count, "runsAs": runs_as(spec.get("userIdentity")),
                           "retention": spec.get("retentionTime") or BATCH_DEFAULT_RETENTION}
    packages = _packages(spec.get("applicationPackageReferences"))
    if packages:
        out["packages"] = packages
    outputs = spec.get("outputFiles") or []
    if outputs:
        out["outputFiles"] = len(outputs)
    deps = spec.get("dependsOn")
    if deps:
        waits = ["the whole sweep"] if deps.get("taskFactory") else []
        waits += [str(t) for t in deps.get("taskIds") or []][:5]
        waits += [f"{r.get('start')}..{r.get('end')}" for r in deps.get("taskIdRanges") or []][:5]
        out["waitsFor"] = waits
    return out


def setup_summary(request: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if not isinstance(request, Mapping):
        return None
    prep = request.get("preparation") or {}
    release = request.get("release") or {}
    out: dict[str, Any] = {
        "preparation": {"runsAs": runs_as(prep.get("userIdentity")),
                        "waitForSuccess": prep.get("waitForSuccess", True),
                        "rerunAfterReboot": prep.get("rerunOnNodeRebootAfterSuccess", True),
                        "retention": prep.get("retentionTime") or BATCH_DEFAULT_RETENTION},
        "release": {"runsAs": runs_as(release.get("userIdentity")),
                    "retention": release.get("retentionTime") or BATCH_DEFAULT_RETENTION},
        "kinds": [],
    }
    sweep = request.get("taskFactory")
    if isinstance(sweep, Mapping):
        try:
            count = max((int(sweep["end"]) - int(sweep["start"])) // int(sweep.get("step") or 1) + 1, 0)
        except (KeyError, TypeError, ValueError):
            count = 0
        out["kinds"].append({"name": f"sweep {sweep.get('idFormat')}", **_kind(sweep, count)})
    for task in request.get("tasks") or []:
        if isinstance(task, Mapping):
            out["kinds"].append({"name": str(task.get("id")), **_kind(task, 1)})
    # Explicit tasks alike in every respect are one row: a request of 5,000 listed tasks stays one line.
    merged: dict[tuple, dict[str, Any]] = {}
    for kind in out["kinds"]:
        key = tuple((k, repr(v)) for k, v in sorted(kind.items()) if k not in ("name", "tasks"))
        if key in merged and not kind["name"].startswith("sweep "):
            merged[key]["tasks"] += kind["tasks"]
            merged[key]["name"] = "tasks"
        else:
            merged.setdefault(key, dict(kind))
    out["kinds"] = list(merged.values())[:50]
    return out
