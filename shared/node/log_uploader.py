#!/usr/bin/env python3
"""Compress and upload a Batch node's logs and crash dumps for one job to the `job-logs` container.

Runs at the end of the job release task, standard library only, beside `lognames.py` (both are resource
files of the release task). One run writes (names in lognames.py):

    bundles/{runId}.zip            every log of the node for the job, one zip: the tasks' stdout.txt and
                                   stderr.txt (the preparation and release task's too) and the files
                                   matching $ORCHESTRATOR_COLLECT_LOGS
    crashdumps/{runId}/{path}.gz   each file matching $ORCHESTRATOR_COLLECT_CRASHDUMPS, gzip on its own
    manifest.json                  last: what this run uploaded, with sizes and sha256

A zip because anyone can open it (unzip, any file manager) and one file can be read out of it with
ranged reads of its central directory and that file's bytes, without fetching the bundle. Every blob is
created, never overwritten (`If-None-Match: *`, and rights that only allow creating): with a create-only
SAS ($ORCHESTRATOR_LOGS_SAS_URL) or as the pool's user-assigned managed identity
($ORCHESTRATOR_LOGS_CONTAINER_URL and $ORCHESTRATOR_UPLOAD_CLIENT_ID: a token from the node's instance
metadata endpoint, so no secret sits in the job's definition). Nothing here lists, reads or deletes.

Each blob goes up as one Put Blob from a file on the node's disk (so memory stays bounded whatever the
sizes), in parts when it is over the single-upload limit. The time budget follows the release task's
maxWallClock ($ORCHESTRATOR_RELEASE_MAX_SECONDS from $ORCHESTRATOR_RELEASE_STARTED), less a margin for the
manifest. Exits 0 whatever happens (the release task's exit code must stay the user's command's);
failures are reported on stderr and in the manifest.
"""

from __future__ import annotations

import argparse
import glob
import gzip
import hashlib
import http.client
import json
import os
import random
import shutil
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lognames  # noqa: E402  (shipped beside this file; the node has no package to import it from)

API_VERSION = "2021-08-06"
# Put Blob takes up to 5000 MiB from version 2019-12-12:
# https://learn.microsoft.com/rest/api/storageservices/put-blob#remarks
PART_BYTES = 4000 * 1024 * 1024
COPY_CHUNK = 1024 * 1024
MAX_ATTEMPTS = 6
BACKOFF_BASE = 0.5
BACKOFF_MAX = 20.0
TIMEOUT = 300
DEFAULT_BUDGET = 600.0  # seconds, when the release task's own limit is not known
MANIFEST_MARGIN = (30.0, 120.0)  # at least, at most: seconds kept back for the manifest
ZIP_SHARE = 0.6  # of the budget, for building the bundle; the rest is for sending it and the dumps
MAX_LISTED = 1000  # failures and renames listed in the manifest; the rest are counted
IMDS_TOKEN_URL = "http://169.254.169.254/metadata/identity/oauth2/token"
STORAGE_RESOURCE = "https://storage.azure.com/"
TOKEN_REFRESH_MARGIN = 300  # seconds before expiry
ALWAYS_COLLECTED = (f"{lognames.TASKS_DIR}/*/stdout.txt", f"{lognames.TASKS_DIR}/*/stderr.txt")


class UploadError(Exception):
    def __init__(self, message, error_code=None):
        super().__init__(message)
        self.error_code = error_code


class AlreadyExists(UploadError):
    """409 on a create-only upload: an earlier attempt or run wrote this name."""


def log(event, **fields):
    # One JSON object per line on stderr; callers never pass the SAS, a token or the URL.
    print(json.dumps({"event": event, **fields}, sort_keys=True), file=sys.stderr, flush=True)


def _backoff(attempt, retry_after=None):
    delay = min(BACKOFF_MAX, BACKOFF_BASE * 2 ** (attempt - 1)) * (0.5 + random.random() / 2)
    if retry_after and retry_after.isdigit():
        delay = max(delay, min(float(retry_after), BACKOFF_MAX))
    return delay


class _Retryable(Exception):
    """429, 5xx or a connection error: worth another attempt."""

    def __init__(self, reason, retry_after=None):
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class _Refused(Exception):
    """Any other HTTP error: another attempt would get the same answer."""

    def __init__(self, code, error_code=None):
        super().__init__(f"HTTP {code} {error_code or ''}".strip())
        self.code = code
        self.error_code = error_code


def _exchange(request, timeout):
    """Send one request and return the response body. Errors never carry the URL, a SAS or a token."""
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.read()
    except urllib.error.HTTPError as exc:
        code, headers = exc.code, exc.headers
        retry_after = headers.get("Retry-After") if headers else None
        error_code = headers.get("x-ms-error-code") if headers else None
        exc.close()
        if code == 429 or code >= 500:
            raise _Retryable(f"HTTP {code}", retry_after) from None
        raise _Refused(code, error_code) from None
    except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
        raise _Retryable(type(getattr(exc, "reason", exc)).__name__) from None


def _with_retries(once, sleep, what="", deadline=None):
    """Call once() until it returns, backing off after each _Retryable, at most MAX_ATTEMPTS times and
    never past the deadline (time.monotonic()): the release task is killed at its maxWallClock."""
    for attempt in range(1, MAX_ATTEMPTS + 1):
        try:
            return once(attempt)
        except _Retryable as exc:
            delay = _backoff(attempt, exc.retry_after)
            if attempt == MAX_ATTEMPTS:
                raise UploadError(f"{what}gave up after {attempt} attempts ({exc.reason})") from None
            if deadline is not None and time.monotonic() + delay >= deadline:
                raise UploadError(f"{what}time budget used up after {attempt} attempts ({exc.reason})") from None
            sleep(delay)


def _timeout(deadline):
    """A request's socket timeout: TIMEOUT, or what is left of the budget if less (at least a second)."""
    if deadline is None:
        return TIMEOUT
    return max(1.0, min(TIMEOUT, deadline - time.monotonic()))


class ManagedIdentityToken:
    """Bearer tokens for Azure Storage from the node's instance metadata endpoint, for one user-assigned
    identity; cached until TOKEN_REFRESH_MARGIN before they expire."""

    def __init__(self, client_id, endpoint=IMDS_TOKEN_URL, clock=time.time, sleep=time.sleep):
        self._url = endpoint + "?" + urllib.parse.urlencode(
            {"api-version": "2018-02-01", "resource": STORAGE_RESOURCE, "client_id": client_id})
        self._clock = clock
        self._sleep = sleep
        self._token = None
        self._expires = 0.0

    def get(self, force=False):
        if force or self._token is None or self._clock() >= self._expires - TOKEN_REFRESH_MARGIN:
            self._token, self._expires = _with_retries(lambda _n: self._fetch(), self._sleep,
                                                       "managed identity token: ")
        return self._token

    def _fetch(self):
        # IMDS answers 429 and 5xx while it starts or is busy: _with_retries retries those, as uploads.
        try:
            body = json.loads(_exchange(urllib.request.Request(self._url, headers={"Metadata": "true"}), 30))
            return body["access_token"], float(body["expires_on"])
        except _Refused as exc:
            raise UploadError(f"managed identity token: {exc} (is the identity assigned to the pool, and is "
                              "its client id right?)") from None
        except (ValueError, KeyError) as exc:
            raise _Retryable(type(exc).__name__) from None


class _Slice:
    """Bytes [offset, offset+length) of an open file, read in chunks: a request body that is never whole
    in memory."""

    def __init__(self, f, offset, length):
        self._f, self._offset, self._left = f, offset, length
        f.seek(offset)

    def read(self, size=-1):
        if self._left <= 0:
            return b""
        size = COPY_CHUNK if size is None or size < 0 else min(size, COPY_CHUNK)
        data = self._f.read(min(size, self._left))
        self._left -= len(data)
        return data


class Container:
    """The job-logs container, written with a SAS URL, or with a plain URL and a ManagedIdentityToken."""

    def __init__(self, url, token=None, sleep=time.sleep):
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise UploadError("container URL must be an http(s) URL")
        if token is None and not parts.query:
            raise UploadError("container URL has no SAS query string, and no managed identity was given")
        if token is not None and parts.query:
            raise UploadError("give either a SAS URL or a managed identity, not both")
        self._base = f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"
        self._sas = parts.query
        self._token = token
        self._sleep = sleep
        self.deadline = None  # time.monotonic() past which no request is started or retried

    def _url(self, blob_name):
        return f"{self._base}/{urllib.parse.quote(blob_name, safe='/')}" + (f"?{self._sas}" if self._sas else "")

    def create(self, blob_name, body, content_type):
        """Create a block blob from bytes, or from (file, offset, length); never overwrite one.

        Raises AlreadyExists if the name was taken before this call (an earlier run wrote it).
        """
        length = len(body) if isinstance(body, bytes) else body[2]
        headers = {"x-ms-version": API_VERSION, "x-ms-blob-type": "BlockBlob", "If-None-Match": "*",
                   "x-ms-blob-content-type": content_type, "Content-Length": str(length)}
        refreshed = False

        def once(attempt):
            nonlocal refreshed
            if self._token is not None:
                headers["Authorization"] = "Bearer " + self._token.get()
            data = body if isinstance(body, bytes) else _Slice(*body)
            if self.deadline is not None and time.monotonic() >= self.deadline:
                raise UploadError("time budget used up")
            request = urllib.request.Request(self._url(blob_name), data=data, method="PUT", headers=headers)
            try:
                _exchange(request, _timeout(self.deadline))
            except _Refused as exc:
                # A create-only credential is refused a name that exists: 409 with write, 403 without.
                exists = (exc.code == 409 and exc.error_code == "BlobAlreadyExists") or (
                    exc.code == 403 and exc.error_code == "AuthorizationPermissionMismatch")
                if exists and attempt > 1:
                    return None  # an earlier attempt of this call landed; only its answer was lost
                if exc.code == 409 and exc.error_code == "BlobAlreadyExists":
                    raise AlreadyExists("the name already exists") from None
                if exc.code in (401, 403) and self._token is not None and not refreshed:
                    # A token revoked or expired early: fetch a new one once, then give up.
                    self._token.get(force=True)
                    refreshed = True
                    return once(attempt)
                raise UploadError(str(exc), exc.error_code) from None

        _with_retries(once, self._sleep, deadline=self.deadline)

    def create_file(self, base_name, path, content_type, part_bytes=None):
        """Upload a file as one blob, or as parts of at most part_bytes; returns [{blob, size}]. The
        container's deadline bounds it."""
        part_bytes = part_bytes or PART_BYTES
        size = os.path.getsize(path)
        count = max(1, -(-size // part_bytes))
        parts = []
        with open(path, "rb") as f:
            for index in range(count):
                name = lognames.part_blob(base_name, index, count)
                offset = index * part_bytes
                length = min(part_bytes, size - offset)
                self.create(name, (f, offset, length), content_type)
                parts.append({"blob": name, "size": length})
        return parts


# ----- what to upload -----------------------------------------------------------------------------

def _relative(path, base):
    full = os.path.abspath(path)
    rel = os.path.relpath(full, base)
    if rel.startswith(".." + os.sep) or rel == ".." or os.path.isabs(rel):
        return "abs" + full  # full starts with '/'
    return rel


def find_files(patterns, base):
    found = {}
    for pattern in patterns:
        full_pattern = pattern if os.path.isabs(pattern) else os.path.join(base, pattern)
        for path in sorted(glob.glob(full_pattern, recursive=True)):
            # Symlinks are skipped: one could point anywhere on the node (keys, other jobs' data).
            if os.path.isfile(path) and not os.path.islink(path):
                found.setdefault(os.path.abspath(path), _relative(path, base).replace(os.sep, "/"))
    return found


def plan(job_id, root, log_globs, crash_globs):
    """(logs, crash dumps): [(local path, path relative to the job's folder)], crash dumps winning ties."""
    base = os.path.join(root, "workitems", job_id)
    crashes = find_files(crash_globs, base)
    logs = find_files(list(log_globs) + list(ALWAYS_COLLECTED), base)
    return (sorted(((p, rel) for p, rel in logs.items() if p not in crashes), key=lambda i: i[1]),
            sorted(crashes.items(), key=lambda i: i[1]))


class Outcome:
    """What a run did, for the manifest: listed up to MAX_LISTED, counted beyond."""

    def __init__(self):
        self.failed, self.failed_count = [], 0
        self.renamed, self.renamed_count = [], 0

    def fail(self, path, error):
        self.failed_count += 1
        if len(self.failed) < MAX_LISTED:
            self.failed.append({"path": lognames.preview(path), "error": error})
        log("upload.failed", path=lognames.preview(path), error=error)

    def rename(self, stored, original):
        self.renamed_count += 1
        if len(self.renamed) < MAX_LISTED:
            self.renamed.append({"path": stored, "original": original})


def _copy(src, dst, digest, deadline):
    size = 0
    while chunk := src.read(COPY_CHUNK):
        if deadline is not None and time.monotonic() > deadline:
            raise UploadError("time budget used up")
        digest.update(chunk)
        dst.write(chunk)
        size += len(chunk)
    return size


def build_bundle(target, logs, outcome, deadline):
    """Write the zip of every log; returns the number of files in it (a file cut short by the budget is
    in it too, and listed as failed)."""
    # strict_timestamps=False: a file dated before 1980 (ZIP's epoch) is stored as 1980, not refused.
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6, allowZip64=True,
                         strict_timestamps=False) as bundle:
        for path, rel in logs:
            if time.monotonic() > deadline:
                outcome.fail(rel, "skipped: time budget used up")
                continue
            stored, original = lognames.safe_path(rel)
            try:
                info = zipfile.ZipInfo.from_file(path, arcname=stored, strict_timestamps=False)
                info.compress_type = zipfile.ZIP_DEFLATED
                with open(path, "rb") as src, bundle.open(info, "w", force_zip64=info.file_size > 2**30) as dst:
                    _copy(src, dst, hashlib.sha256(), deadline)
            except (OSError, ValueError, UploadError) as exc:
                outcome.fail(rel, str(exc) if isinstance(exc, UploadError) else type(exc).__name__)
                continue
            if original is not None:
                outcome.rename(stored, original)
        return len(bundle.infolist())


def _digest_file(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(COPY_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def upload_bundle(container, job_id, node_id, run_id, logs, scratch, outcome, deadline, part_bytes):
    target = os.path.join(scratch, "bundle.zip")
    entries = build_bundle(target, logs, outcome, deadline)
    base = lognames.bundle_blob(job_id, node_id, run_id)
    parts = container.create_file(base, target, "application/zip", part_bytes)
    record = {"blob": base, "parts": parts, "size": os.path.getsize(target), "sha256": _digest_file(target),
              "entries": entries}
    os.unlink(target)
    return record


def upload_crash_dump(container, job_id, node_id, run_id, path, rel, scratch, deadline, part_bytes):
    # The blob name is the path with a prefix and suffixes (.gz, a part's .NNN): it must fit Azure's limit.
    room = lognames.MAX_NAME - len(lognames.crash_dump_blob(job_id, node_id, run_id, "")) - len(".000")
    stored, original = lognames.safe_path(rel, min(900, room))
    target = os.path.join(scratch, "dump.gz")
    digest = hashlib.sha256()
    # mtime=0: the same dump compresses to the same bytes on every run.
    with open(path, "rb") as src, open(target, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as dst:
        size = _copy(src, dst, digest, deadline)
    base = lognames.crash_dump_blob(job_id, node_id, run_id, stored)
    parts = container.create_file(base, target, "application/gzip", part_bytes)
    record = {"path": stored, "blob": base, "parts": parts, "size": size, "sha256": digest.hexdigest(),
              "compressedSize": os.path.getsize(target)}
    if original is not None:
        record["original"] = original
    os.unlink(target)
    return record


def new_run_id(now=None):
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
    return f"{stamp}-{os.urandom(4).hex()}"


def run(job_id, node_id, container, root, log_globs, crash_globs, budget_seconds=DEFAULT_BUDGET,
        scratch_dir=None, part_bytes=None, run_id=None):
    """Upload the bundle, then each crash dump, then the manifest (which the budget leaves time for)."""
    started = time.time()
    budget = max(budget_seconds, 0)
    deadline = time.monotonic() + budget
    # Zipping stops early enough to leave the bundle time to go up: a bundle built and not sent is lost.
    zip_deadline = time.monotonic() + budget * ZIP_SHARE
    container.deadline = deadline
    run_id = run_id or new_run_id(started)
    logs, crashes = plan(job_id, root, log_globs, crash_globs)
    outcome = Outcome()
    bundle, dumps = None, []
    with tempfile.TemporaryDirectory(prefix="orchestrator-upload-", dir=scratch_dir) as scratch:
        try:
            bundle = upload_bundle(container, job_id, node_id, run_id, logs, scratch, outcome, zip_deadline, part_bytes)
        except (UploadError, OSError) as exc:
            outcome.fail("bundle", str(exc) if isinstance(exc, UploadError) else type(exc).__name__)
        for path, rel in crashes:
            if time.monotonic() > deadline:
                outcome.fail(rel, "skipped: time budget used up")
                continue
            try:
                dumps.append(upload_crash_dump(container, job_id, node_id, run_id, path, rel, scratch, deadline,
                                               part_bytes))
            except (UploadError, OSError) as exc:
                outcome.fail(rel, str(exc) if isinstance(exc, UploadError) else type(exc).__name__)
        shutil.rmtree(scratch, ignore_errors=True)
    manifest = {
        "schema": lognames.MANIFEST_SCHEMA, "jobId": job_id, "nodeId": node_id, "runId": run_id,
        "startedAt": _iso(started), "finishedAt": _iso(time.time()), "bundle": bundle, "crashDumps": dumps,
        "failed": outcome.failed, "failedCount": outcome.failed_count,
        "renamed": outcome.renamed, "renamedCount": outcome.renamed_count,
    }
    written = True
    # The manifest has the margin the budget left out: it is what makes the rest of the upload count.
    container.deadline = time.monotonic() + MANIFEST_MARGIN[0]
    try:
        container.create(lognames.manifest_blob(job_id, node_id), json.dumps(manifest, sort_keys=True).encode(),
                         "application/json")
    except UploadError as exc:
        written = False
        # A create-only credential that just created this run's bundle is refused only a name that exists:
        # Storage answers 403 AuthorizationPermissionMismatch (replacing needs write), or 409 with write.
        if isinstance(exc, AlreadyExists) or (bundle and exc.error_code == "AuthorizationPermissionMismatch"):
            log("manifest.exists", note="an earlier run of this node's release task completed; keeping its upload")
        else:
            log("manifest.failed", error=str(exc))
    log("upload.done", run=run_id, files=bundle["entries"] if bundle else 0, crashDumps=len(dumps),
        failed=outcome.failed_count, manifest=written,
        bytes=(bundle["size"] if bundle else 0) + sum(d["compressedSize"] for d in dumps))
    return manifest, written


def _iso(epoch):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def budget_from_env(env, now):
    """Seconds left for uploading: the release task's maxWallClock from its start, less the manifest's
    margin; an explicit ORCHESTRATOR_UPLOAD_BUDGET_SECONDS wins."""
    explicit = env.get("ORCHESTRATOR_UPLOAD_BUDGET_SECONDS")
    if explicit:
        return float(explicit)
    try:
        limit = float(env["ORCHESTRATOR_RELEASE_MAX_SECONDS"])
        started = float(env["ORCHESTRATOR_RELEASE_STARTED"])
    except (KeyError, ValueError):
        return DEFAULT_BUDGET
    low, high = MANIFEST_MARGIN
    margin = min(high, max(low, limit * 0.1))
    return max(0.0, started + limit - margin - now)


def _env_list(name):
    raw = os.environ.get(name, "")
    if not raw:
        return []
    try:
        value = json.loads(raw)
        return [str(v) for v in value] if isinstance(value, list) else [str(value)]
    except ValueError:
        return [p for p in raw.split(os.pathsep) if p]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--job-id", default=os.environ.get("AZ_BATCH_JOB_ID"))
    parser.add_argument("--node-id", default=os.environ.get("AZ_BATCH_NODE_ID"))
    parser.add_argument("--root", default=os.environ.get("AZ_BATCH_NODE_ROOT_DIR"))
    parser.add_argument("--container-url-env", default="ORCHESTRATOR_LOGS_SAS_URL",
                        help="name of the environment variable holding the container SAS URL")
    parser.add_argument("--imds-url", default=os.environ.get("ORCHESTRATOR_IMDS_URL", IMDS_TOKEN_URL),
                        help="instance metadata token endpoint (identity uploads)")
    parser.add_argument("--logs", action="append", default=None, help="glob; repeatable")
    parser.add_argument("--crash-dumps", action="append", default=None, help="glob; repeatable")
    parser.add_argument("--budget-seconds", type=float, default=None)
    parser.add_argument("--part-bytes", type=int, default=int(os.environ.get("ORCHESTRATOR_UPLOAD_PART_BYTES", 0))
                        or None, help="largest single upload (parts beyond it)")
    try:
        args = parser.parse_args(argv)
    except SystemExit:
        return 0
    log_globs = args.logs if args.logs is not None else _env_list("ORCHESTRATOR_COLLECT_LOGS")
    crash_globs = args.crash_dumps if args.crash_dumps is not None else _env_list("ORCHESTRATOR_COLLECT_CRASHDUMPS")
    missing = [n for n, v in (("job id", args.job_id), ("node id", args.node_id), ("root", args.root)) if not v]
    url = os.environ.get(args.container_url_env, "")
    client_id = os.environ.get("ORCHESTRATOR_UPLOAD_CLIENT_ID", "")
    if not url and client_id:
        url = os.environ.get("ORCHESTRATOR_LOGS_CONTAINER_URL", "")
    if not url:
        missing.append(f"${args.container_url_env} (or $ORCHESTRATOR_LOGS_CONTAINER_URL with "
                       "$ORCHESTRATOR_UPLOAD_CLIENT_ID)")
    if missing:
        log("upload.skipped", reason="missing " + ", ".join(missing))
        return 0
    try:
        token = ManagedIdentityToken(client_id, args.imds_url) if client_id and "?" not in url else None
        container = Container(url, token)
    except UploadError as exc:
        log("upload.skipped", reason=str(exc))
        return 0
    budget = args.budget_seconds if args.budget_seconds is not None else budget_from_env(os.environ, time.time())
    try:
        run(args.job_id, args.node_id, container, args.root, log_globs, crash_globs, budget,
            scratch_dir=os.environ.get("AZ_BATCH_TASK_WORKING_DIR") or None, part_bytes=args.part_bytes)
    except Exception as exc:  # the release task's exit code must stay the user's
        log("upload.crashed", error=type(exc).__name__)
    return 0


if __name__ == "__main__":
    sys.exit(main())
