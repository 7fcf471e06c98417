#!/usr/bin/env python3
"""Upload a Batch node's logs and crash dumps for one job to the `job-logs` container.

Runs in the job release task, standard library only. It writes with either a container SAS that may
only create and write ($ORCHESTRATOR_LOGS_SAS_URL), or the pool's user-assigned managed identity
($ORCHESTRATOR_LOGS_CONTAINER_URL and $ORCHESTRATOR_UPLOAD_CLIENT_ID: a token from the node's instance
metadata endpoint, so no secret sits in the job's definition). Nothing here lists, reads or deletes.
Exits 0 whatever happens (the release task's exit code must stay the user's command's); failures are
reported on stderr and in the manifest.

    {jobId}/{nodeId}/logs/<path>        files matching --logs, and tasks' stdout.txt/stderr.txt
    {jobId}/{nodeId}/crashdumps/<path>  files matching --crash-dumps
    {jobId}/{nodeId}/manifest.json      written last: every uploaded file with size and sha256

<path> is relative to $AZ_BATCH_NODE_ROOT_DIR/workitems/{jobId}/, or `abs/<absolute path>`.
"""

from __future__ import annotations

import argparse
import base64
import glob
import hashlib
import http.client
import json
import os
import random
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from xml.sax.saxutils import escape

API_VERSION = "2021-08-06"
BLOCK_SIZE = 4 * 1024 * 1024
SINGLE_PUT_MAX = BLOCK_SIZE
MAX_ATTEMPTS = 6
BACKOFF_BASE = 0.5
BACKOFF_MAX = 20.0
TIMEOUT = 120
MANIFEST_SCHEMA = "job-logs-manifest.v1"
DEFAULT_BUDGET = 600.0  # seconds; the release task is killed at 15 minutes
IMDS_TOKEN_URL = "http://169.254.169.254/metadata/identity/oauth2/token"
STORAGE_RESOURCE = "https://storage.azure.com/"
TOKEN_REFRESH_MARGIN = 300  # seconds before expiry


class UploadError(Exception):
    pass


def log(event, **fields):
    # One JSON object per line on stderr; callers never pass the SAS or the URL.
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


def _with_retries(once, sleep, what=""):
    """Call once() until it returns, backing off after each _Retryable, at most MAX_ATTEMPTS times."""
    for attempt in range(1, MAX_ATTEMPTS + 1):
        try:
            return once()
        except _Retryable as exc:
            if attempt == MAX_ATTEMPTS:
                raise UploadError(f"{what}gave up after {attempt} attempts ({exc.reason})") from None
            sleep(_backoff(attempt, exc.retry_after))


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
            self._token, self._expires = _with_retries(self._fetch, self._sleep, "managed identity token: ")
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

    def _url(self, blob_name, extra=""):
        query = "&".join(q for q in (self._sas, extra) if q)
        return f"{self._base}/{urllib.parse.quote(blob_name, safe='/')}" + (f"?{query}" if query else "")

    def _put(self, blob_name, body, headers, extra=""):
        """PUT with retries on 5xx, 429 and connection errors."""
        headers = {"x-ms-version": API_VERSION, "Content-Length": str(len(body)), **headers}
        refreshed = False

        def once():
            nonlocal refreshed
            if self._token is not None:
                headers["Authorization"] = "Bearer " + self._token.get()
            request = urllib.request.Request(self._url(blob_name, extra), data=body, method="PUT", headers=headers)
            try:
                _exchange(request, TIMEOUT)
            except _Refused as exc:
                if exc.code in (401, 403) and self._token is not None and not refreshed:
                    # A token revoked or expired early: fetch a new one once, then give up.
                    self._token.get(force=True)
                    refreshed = True
                    return once()
                raise UploadError(str(exc)) from None

        _with_retries(once, self._sleep)

    def put_blob(self, blob_name, body, content_type):
        self._put(blob_name, body, {"x-ms-blob-type": "BlockBlob", "x-ms-blob-content-type": content_type})

    def put_block(self, blob_name, block_id, body):
        self._put(blob_name, body, {}, "comp=block&blockid=" + urllib.parse.quote(block_id, safe=""))

    def put_block_list(self, blob_name, block_ids, content_type):
        xml = "<?xml version='1.0' encoding='utf-8'?><BlockList>"
        xml += "".join(f"<Latest>{escape(b)}</Latest>" for b in block_ids) + "</BlockList>"
        self._put(blob_name, xml.encode(), {"x-ms-blob-content-type": content_type, "Content-Type": "application/xml"},
                  "comp=blocklist")


def upload_file(container, path, blob_name, content_type, deadline=None):
    """Returns (size, sha256) of the bytes actually sent."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        first = f.read(SINGLE_PUT_MAX + 1)
        if len(first) <= SINGLE_PUT_MAX:
            digest.update(first)
            container.put_blob(blob_name, first, content_type)
            return len(first), digest.hexdigest()
        f.seek(0)
        block_ids, size = [], 0
        while block := f.read(BLOCK_SIZE):
            if deadline is not None and time.monotonic() > deadline:
                raise UploadError("time budget used up")
            # Fixed-width ids: Azure requires all of a blob's block ids to have the same length.
            block_id = base64.b64encode(f"block-{len(block_ids):08d}".encode()).decode()
            container.put_block(blob_name, block_id, block)
            digest.update(block)
            size += len(block)
            block_ids.append(block_id)
        container.put_block_list(blob_name, block_ids, content_type)
        return size, digest.hexdigest()


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
    """[(local path, blob path under {jobId}/{nodeId}/, content type)], crash dumps winning ties."""
    base = os.path.join(root, "workitems", job_id)
    crashes = find_files(crash_globs, base)
    logs = find_files(list(log_globs) + ["job-1/*/stdout.txt", "job-1/*/stderr.txt"], base)
    items = [(p, "crashdumps/" + rel, "application/octet-stream") for p, rel in crashes.items()]
    items += [(p, "logs/" + rel, "text/plain; charset=utf-8") for p, rel in logs.items() if p not in crashes]
    return sorted(items, key=lambda item: item[1])


def run(job_id, node_id, container, root, log_globs, crash_globs, budget_seconds=DEFAULT_BUDGET):
    """Upload, then the manifest; the budget leaves the manifest time inside the release task's 15 minutes."""
    prefix = f"{job_id}/{node_id}/"
    deadline = time.monotonic() + budget_seconds
    files, failed = [], []
    for path, rel, content_type in plan(job_id, root, log_globs, crash_globs):
        if time.monotonic() > deadline:
            failed.append({"path": rel, "error": "skipped: time budget used up"})
            continue
        try:
            size, sha = upload_file(container, path, prefix + rel, content_type, deadline)
            files.append({"path": rel, "size": size, "sha256": sha})
        except (UploadError, OSError) as exc:
            message = str(exc) if isinstance(exc, UploadError) else type(exc).__name__
            failed.append({"path": rel, "error": message})
            log("upload.failed", path=rel, error=message)
    manifest = {"schema": MANIFEST_SCHEMA, "jobId": job_id, "nodeId": node_id, "files": files, "failed": failed}
    try:
        body = json.dumps(manifest, indent=1, sort_keys=True).encode()
        container.put_blob(prefix + "manifest.json", body, "application/json")
    except UploadError as exc:
        log("manifest.failed", error=str(exc))
        failed.append({"path": "manifest.json", "error": str(exc)})
    log("upload.done", uploaded=len(files), failed=len(failed), bytes=sum(f["size"] for f in files))
    return files, failed


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
    parser.add_argument("--budget-seconds", type=float,
                        default=float(os.environ.get("ORCHESTRATOR_UPLOAD_BUDGET_SECONDS", DEFAULT_BUDGET)))
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
    try:
        run(args.job_id, args.node_id, container, args.root, log_globs, crash_globs, args.budget_seconds)
    except Exception as exc:  # the release task's exit code must stay the user's
        log("upload.crashed", error=type(exc).__name__)
    return 0


if __name__ == "__main__":
    sys.exit(main())
