"""Pure report assembly: per-file index records, manifest checks, and report.json."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from shared.pure.blob_layout import CRASH_DUMP, KIND_DIRS, LOG, LogBlob, check_name
from shared.pure.values import NodeRuns, TaskResult, TaskRun

REPORT_SCHEMA = "job-report.v1"
FILE_RECORD_SCHEMA = "job-file.v1"
NODE_RECORD_SCHEMA = "job-node.v1"
MANIFEST_SCHEMA = "job-logs-manifest.v1"
MAX_MANIFEST_BYTES = 16 * 1024 * 1024
MAX_MANIFEST_FILES = 100_000
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


class ManifestInvalid(ValueError):
    pass


def file_record(blob: LogBlob, *, size: int, sha256: str, content_type: str | None,
                summary: Mapping[str, Any]) -> dict[str, Any]:
    """The index record for one collected file (summary: LogSummary/CrashSummary.to_dict())."""
    record: dict[str, Any] = {
        "schema": FILE_RECORD_SCHEMA,
        "jobId": blob.job_id,
        "nodeId": blob.node_id,
        "kind": blob.kind,
        "path": blob.path,
        "blobName": blob.name,
        "size": size,
        "sha256": sha256,
        "contentType": content_type,
    }
    if blob.kind == LOG:
        record["log"] = {k: v for k, v in summary.items() if k not in ("size", "sha256")}
    elif blob.kind == CRASH_DUMP:
        record["crashDump"] = {k: v for k, v in summary.items() if k not in ("size", "sha256")}
    if size == 0:
        record["note"] = "zero-byte file"
    return record


def node_rows(runs: Iterable[NodeRuns], tasks: Iterable[TaskResult]) -> list[dict[str, Any]]:
    """Per node that ran the job: its prep and release exit codes and the tasks it ran, for the report."""
    rows: dict[str, dict[str, Any]] = {}

    def row(node_id: str, prep: TaskRun | None = None, release: TaskRun | None = None) -> dict[str, Any]:
        prep, release = prep or TaskRun(), release or TaskRun()
        return {"nodeId": node_id, "prepExitCode": prep.exit_code, "prepResult": prep.result,
                "releaseExitCode": release.exit_code, "releaseResult": release.result, "tasks": []}

    for node in runs:
        rows[node.node_id] = row(node.node_id, node.preparation, node.release)
    for task in tasks:
        if task.node_id:
            rows.setdefault(task.node_id, row(task.node_id))["tasks"].append(
                {"id": task.id, "state": task.state, "exitCode": task.exit_code, "result": task.result})
    return sorted(rows.values(), key=lambda r: r["nodeId"])


def outcome_only(job_id: str, outcome: Mapping[str, Any]) -> dict[str, Any]:
    """The report of a job whose outcome is recorded but whose files have not been collected yet."""
    return assemble_report(job_id, outcome, [], [], [])


def parse_manifest(raw: bytes, job_id: str, node_id: str) -> dict[str, Any]:
    """Validate an uploader manifest; raises ManifestInvalid naming the field and the rule."""
    if len(raw) > MAX_MANIFEST_BYTES:
        raise ManifestInvalid(f"manifest is {len(raw)} bytes; the limit is {MAX_MANIFEST_BYTES}")
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ManifestInvalid(f"manifest is not JSON: {exc.__class__.__name__}") from None
    if not isinstance(data, dict):
        raise ManifestInvalid("manifest must be a JSON object")
    if data.get("jobId") != job_id or data.get("nodeId") != node_id:
        raise ManifestInvalid("jobId/nodeId in the manifest do not match its blob name")
    files = data.get("files")
    if not isinstance(files, list) or len(files) > MAX_MANIFEST_FILES:
        raise ManifestInvalid(f"files must be a list of at most {MAX_MANIFEST_FILES} entries")
    clean = []
    for i, entry in enumerate(files):
        if not isinstance(entry, dict):
            raise ManifestInvalid(f"files[{i}] must be an object")
        path, size, sha = entry.get("path"), entry.get("size"), entry.get("sha256")
        if (
            not isinstance(path, str)
            or not isinstance(check_name(path), list)
            or path.split("/", 1)[0] not in KIND_DIRS
        ):
            raise ManifestInvalid(f"files[{i}].path must be a safe path under logs/ or crashdumps/")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise ManifestInvalid(f"files[{i}].size must be a non-negative integer")
        if not isinstance(sha, str) or not _SHA256_RE.fullmatch(sha):
            raise ManifestInvalid(f"files[{i}].sha256 must be 64 lowercase hex digits")
        clean.append({"path": path, "size": size, "sha256": sha})
    failed = data.get("failed") or []
    if not isinstance(failed, list):
        raise ManifestInvalid("failed must be a list")
    return {
        "schema": data.get("schema"),
        "jobId": job_id,
        "nodeId": node_id,
        "files": clean,
        "failed": [
            {"path": str(f.get("path", ""))[:1024], "error": str(f.get("error", ""))[:500]}
            for f in failed
            if isinstance(f, dict)
        ][:1000],
    }


def verify_manifest(manifest: Mapping[str, Any], records: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Node record: collected when every listed file has an index record with the same size and sha256.

    records: at least {path, size, sha256} for the node's indexed files.
    """
    by_path = {r["path"]: r for r in records}
    missing, mismatched = [], []
    for entry in manifest["files"]:
        got = by_path.get(entry["path"])
        if got is None:
            missing.append(entry["path"])
        elif got.get("size") != entry["size"] or got.get("sha256") != entry["sha256"]:
            mismatched.append(
                {
                    "path": entry["path"],
                    "expected": {"size": entry["size"], "sha256": entry["sha256"]},
                    "actual": {"size": got.get("size"), "sha256": got.get("sha256")},
                }
            )
    return {
        "schema": NODE_RECORD_SCHEMA,
        "jobId": manifest["jobId"],
        "nodeId": manifest["nodeId"],
        "collected": not missing and not mismatched,
        "expectedFiles": len(manifest["files"]),
        "missing": sorted(missing),
        "mismatched": sorted(mismatched, key=lambda m: m["path"]),
        "uploadFailures": list(manifest.get("failed", [])),
    }


def invalid_manifest_record(job_id: str, node_id: str, reason: str) -> dict[str, Any]:
    return {
        "schema": NODE_RECORD_SCHEMA,
        "jobId": job_id,
        "nodeId": node_id,
        "collected": False,
        "manifestError": reason,
    }


def _crash_groups(crash_records: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
    groups: dict[str, dict[str, Any]] = {}
    for rec in crash_records:
        info = rec.get("crashDump") or {}
        key = info.get("fingerprint") or rec.get("sha256") or ""
        group = groups.setdefault(
            key,
            {
                "fingerprint": key,
                "format": info.get("format"),
                "executable": info.get("executable"),
                "signalName": info.get("signalName"),
                "exceptionCode": info.get("exceptionCode"),
                "location": info.get("location"),
                "count": 0,
                "nodes": set(),
                "files": [],
            },
        )
        group["count"] += 1
        group["nodes"].add(rec.get("nodeId"))
        group["files"].append(f"{rec.get('nodeId')}/{rec.get('path')}")
    out = []
    for g in sorted(groups.values(), key=lambda g: (-g["count"], g["fingerprint"])):
        out.append({**g, "nodes": sorted(n for n in g["nodes"] if n), "files": sorted(g["files"])[:100]})
    return out


def assemble_report(
    job_id: str,
    outcome: Mapping[str, Any] | None,
    node_statuses: Iterable[Mapping[str, Any]],
    file_records: Iterable[Mapping[str, Any]],
    manifests: Iterable[Mapping[str, Any]],
    generated_at: str | None = None,
) -> dict[str, Any]:
    """report.json. manifests: node records from verify_manifest/invalid_manifest_record.

    node_statuses: [{nodeId, prepExitCode, releaseExitCode, tasks: [...]}] from Batch.
    """
    statuses = {s["nodeId"]: s for s in node_statuses if s.get("nodeId")}
    checks = {m["nodeId"]: m for m in manifests if m.get("nodeId")}
    records = sorted(
        (r for r in file_records if r.get("jobId", job_id) == job_id),
        key=lambda r: (str(r.get("nodeId")), str(r.get("path"))),
    )
    per_node: dict[str, list[Mapping[str, Any]]] = {}
    for rec in records:
        per_node.setdefault(str(rec.get("nodeId")), []).append(rec)

    nodes = []
    for node_id in sorted(set(statuses) | set(checks) | set(per_node)):
        status, check, recs = statuses.get(node_id, {}), checks.get(node_id), per_node.get(node_id, [])
        nodes.append(
            {
                "nodeId": node_id,
                "prepExitCode": status.get("prepExitCode"),
                "releaseExitCode": status.get("releaseExitCode"),
                "tasks": list(status.get("tasks", [])),
                "collected": bool(check and check.get("collected")),
                "manifestReceived": check is not None,
                "missing": list(check.get("missing", [])) if check else [],
                "mismatched": list(check.get("mismatched", [])) if check else [],
                "manifestError": check.get("manifestError") if check else None,
                "uploadFailures": list(check.get("uploadFailures", [])) if check else [],
                "files": sum(1 for r in recs if r.get("kind") == LOG),
                "crashDumps": sum(1 for r in recs if r.get("kind") == CRASH_DUMP),
            }
        )

    logs = [r for r in records if r.get("kind") == LOG]
    crashes = [r for r in records if r.get("kind") == CRASH_DUMP]
    expected_nodes = [n for n in nodes if n["releaseExitCode"] is not None or n["manifestReceived"]]
    return {
        "schema": REPORT_SCHEMA,
        "jobId": job_id,
        "generatedAt": generated_at,
        "outcome": dict(outcome) if outcome is not None else None,
        "collectionComplete": bool(expected_nodes) and all(n["collected"] for n in expected_nodes),
        "totals": {
            "nodes": len(nodes),
            "nodesCollected": sum(1 for n in nodes if n["collected"]),
            "files": len(logs),
            "crashDumps": len(crashes),
            "bytes": sum(int(r.get("size") or 0) for r in records),
            "errorLines": sum(int((r.get("log") or {}).get("errorLines") or 0) for r in logs),
        },
        "nodes": nodes,
        "files": [_brief(r) for r in logs],
        "crashDumps": [_brief(r) for r in crashes],
        "crashGroups": _crash_groups(crashes),
    }


def _brief(rec: Mapping[str, Any]) -> dict[str, Any]:
    out = {k: rec.get(k) for k in ("nodeId", "path", "size", "sha256")}
    if rec.get("log"):
        out["lines"] = rec["log"].get("lines")
        out["errorLines"] = rec["log"].get("errorLines")
    if rec.get("crashDump"):
        cd = rec["crashDump"]
        out.update({k: cd.get(k) for k in ("format", "executable", "signalName", "exceptionCode", "fingerprint")})
    return out
