"""The uploader's manifest (`{jobId}/{nodeId}/manifest.json`, schema job-logs-manifest.v2), validated.

A manifest comes from a node, so nothing in it is trusted: every field is checked, every list bounded,
and the first problem is named with its field and rule.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from shared.node import lognames

MAX_MANIFEST_BYTES = 4 * 1024 * 1024
MAX_LISTED = 1000  # failures, renames and crash dumps kept from a manifest
MAX_PARTS = 1000
_SHA256_RE = re.compile(r"[0-9a-f]{64}")


class ManifestInvalid(ValueError):
    pass


@dataclass(frozen=True)
class Part:
    blob: str
    size: int


@dataclass(frozen=True)
class Upload:
    """One logical blob: the bundle, or one crash dump (sha256 and size of the uncompressed dump)."""

    blob: str
    parts: tuple[Part, ...]
    size: int
    sha256: str
    path: str = ""  # crash dumps: where the dump was on the node, relative to the job's folder
    original: str | None = None  # the path as it was, escaped, when it broke the naming rules
    entries: int = 0  # bundles: files in it

    @property
    def stored_size(self) -> int:
        return sum(p.size for p in self.parts)


@dataclass(frozen=True)
class Manifest:
    job_id: str
    node_id: str
    run_id: str
    bundle: Upload | None
    crash_dumps: tuple[Upload, ...] = ()
    failed: tuple[dict, ...] = ()
    failed_count: int = 0
    renamed: tuple[dict, ...] = ()
    renamed_count: int = 0
    started_at: str | None = None
    finished_at: str | None = None
    names: frozenset[str] = field(default_factory=frozenset)  # every blob it accounts for

    def blobs(self) -> frozenset[str]:
        return self.names | {lognames.manifest_blob(self.job_id, self.node_id)}


def _int(value, where: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ManifestInvalid(f"{where} must be a non-negative integer")
    return value


def _text(value, where: str, limit: int = 2048) -> str:
    if not isinstance(value, str) or len(value) > limit:
        raise ManifestInvalid(f"{where} must be text of at most {limit} characters")
    return value


def _parts(value, where: str, base: str, prefix: str) -> tuple[Part, ...]:
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_PARTS:
        raise ManifestInvalid(f"{where} must be a list of 1 to {MAX_PARTS} parts")
    out = []
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            raise ManifestInvalid(f"{where}[{i}] must be an object")
        blob = _text(item.get("blob"), f"{where}[{i}].blob", lognames.MAX_NAME)
        if blob != lognames.part_blob(base, i, len(value)) or not blob.startswith(prefix):
            raise ManifestInvalid(f"{where}[{i}].blob must be part {i} of {base!r} under this node")
        out.append(Part(blob, _int(item.get("size"), f"{where}[{i}].size")))
    return tuple(out)


def _upload(value, where: str, prefix: str, crash: bool) -> Upload:
    if not isinstance(value, dict):
        raise ManifestInvalid(f"{where} must be an object")
    blob = _text(value.get("blob"), f"{where}.blob", lognames.MAX_NAME)
    if not blob.startswith(prefix) or lognames.problem(blob) is not None:
        raise ManifestInvalid(f"{where}.blob must be a safe name under {prefix!r}")
    sha = value.get("sha256")
    if not isinstance(sha, str) or not _SHA256_RE.fullmatch(sha):
        raise ManifestInvalid(f"{where}.sha256 must be 64 lowercase hex digits")
    path = ""
    if crash:
        path = _text(value.get("path"), f"{where}.path", 1024)
        if lognames.problem(path) is not None:
            raise ManifestInvalid(f"{where}.path must keep the naming rules")
    original = value.get("original")
    return Upload(blob=blob, parts=_parts(value.get("parts"), f"{where}.parts", blob, prefix),
                  size=_int(value.get("size"), f"{where}.size"), sha256=sha, path=path,
                  original=_printable(original) if original is not None else None,
                  entries=0 if crash else _int(value.get("entries", 0), f"{where}.entries"))


def _listed(value, where: str, keys: tuple[str, ...]) -> tuple[dict, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ManifestInvalid(f"{where} must be a list")
    return tuple({k: _printable(item.get(k, "")) for k in keys} for item in value[:MAX_LISTED]
                 if isinstance(item, dict))


def _printable(value: object) -> str:
    """Text from a node, kept as it is if already printable ASCII (the uploader escapes names), else escaped."""
    text = str(value)
    return (text if text.isascii() and text.isprintable() else lognames.preview(text))[:500]


def parse_manifest(raw: bytes, job_id: str, node_id: str) -> Manifest:
    """Validate a manifest read from `{job_id}/{node_id}/manifest.json`; raises ManifestInvalid."""
    if len(raw) > MAX_MANIFEST_BYTES:
        raise ManifestInvalid(f"manifest is {len(raw)} bytes; the limit is {MAX_MANIFEST_BYTES}")
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise ManifestInvalid(f"manifest is not JSON: {exc.__class__.__name__}") from None
    if not isinstance(data, dict):
        raise ManifestInvalid("manifest must be a JSON object")
    if data.get("schema") != lognames.MANIFEST_SCHEMA:
        raise ManifestInvalid(f"schema must be {lognames.MANIFEST_SCHEMA!r}")
    if data.get("jobId") != job_id or data.get("nodeId") != node_id:
        raise ManifestInvalid("jobId/nodeId in the manifest do not match its blob name")
    run_id = data.get("runId")
    if not isinstance(run_id, str) or not lognames.is_run_id(run_id):
        raise ManifestInvalid("runId must look like 20260101T000000Z-0123abcd")
    bundle = None
    if data.get("bundle") is not None:
        bundle = _upload(data["bundle"], "bundle", f"{job_id}/{node_id}/{lognames.BUNDLES_DIR}/{run_id}.zip", False)
        if bundle.blob != lognames.bundle_blob(job_id, node_id, run_id):
            raise ManifestInvalid("bundle.blob must be this run's bundle name")
    dumps = data.get("crashDumps") or []
    if not isinstance(dumps, list) or len(dumps) > MAX_LISTED:
        raise ManifestInvalid(f"crashDumps must be a list of at most {MAX_LISTED}")
    prefix = f"{job_id}/{node_id}/{lognames.CRASH_DIR}/{run_id}/"
    crash_dumps = tuple(_upload(d, f"crashDumps[{i}]", prefix, True) for i, d in enumerate(dumps))
    names = {p.blob for u in (bundle, *crash_dumps) if u is not None for p in u.parts}
    return Manifest(
        job_id=job_id, node_id=node_id, run_id=run_id, bundle=bundle, crash_dumps=crash_dumps,
        failed=_listed(data.get("failed"), "failed", ("path", "error")),
        failed_count=_int(data.get("failedCount", 0), "failedCount"),
        renamed=_listed(data.get("renamed"), "renamed", ("path", "original")),
        renamed_count=_int(data.get("renamedCount", 0), "renamedCount"),
        started_at=data.get("startedAt") if isinstance(data.get("startedAt"), str) else None,
        finished_at=data.get("finishedAt") if isinstance(data.get("finishedAt"), str) else None,
        names=frozenset(names),
    )
