"""Seeded fuzzing through the real submit function and store, on a Batch emulator of the test's own.

Whatever a sender puts on the queue, each delivery ends in exactly one of: a job, one rejection record
(never overwritten) with its reason, or a scheduled re-send (Batch was failing) recorded by the
orchestrator. And no SAS signature appears in what the orchestrator keeps for operators or logs.
"""

from __future__ import annotations

import json
import logging
import random
import uuid

import pytest

from shared.pure import blob_layout as layout
from shared.pure.request import RequestInvalid, derive_job_id, message_key, parse_request
from shared.pure.retry import ATTEMPTS, ORIGINAL_ID, REASON
from tests.orchestrator.conftest import request, sb_message, services_on

SEED = 20261201
COUNT = 160
SECRET = "FUZZSECRET"


def sas(i: int) -> str:
    return f"https://acct.blob.core.windows.net/in/f{i}.bin?sv=2024-05-04&sp=r&sig={SECRET}{i}%3D"


# Where a string can go in a request: valid places and invalid ones.
FIELDS = [("jobId",), ("poolId",), ("timeout",), ("preparation", "commandLine"), ("release", "commandLine"),
          ("preparation", "resourceFiles", 0, "httpUrl"), ("environment", "NAME"), ("environment", "@key"),
          ("taskFactory", "idFormat"), ("taskFactory", "commandLine"), ("@key",), ("collect", "logs", 0),
          ("preparation", "maxWallClock")]


def put(body: dict, path: tuple, value: str) -> None:
    node = body
    for part in path[:-1]:
        if isinstance(part, int):
            while len(node) <= part:
                node.append({"httpUrl": "https://a/b", "filePath": "f"})
            node = node[part]
        else:
            node = node.setdefault(part, [] if isinstance(path[path.index(part) + 1], int) else {})
    last = path[-1]
    if last == "@key":  # the value as a key: an unknown field, an environment variable's name
        node[value] = "x"
    elif isinstance(last, int):
        node[last] = value
    else:
        node[last] = value


def generate(rng: random.Random, i: int, job_id: str) -> tuple[bytes, str | None, dict, int]:
    """(body, MessageId or None, application properties, sequence number) of one hostile message."""
    body = request(job_id, pool="pool-empty", tasks=rng.randint(1, 3))
    body["preparation"]["resourceFiles"] = [{"httpUrl": sas(i), "filePath": "tool.sh"}]
    message_id: str | None = uuid.uuid4().hex
    props: dict = {}
    kind = rng.choice(["valid", "no_job_id", "no_message_id", "forged", "sas_field", "sas_field", "type",
                       "not_json", "deep", "huge", "random_bytes", "null"])
    if kind == "no_job_id":
        del body["jobId"]
    elif kind == "no_message_id":
        message_id = None
        if rng.random() < 0.5:
            del body["jobId"]
    elif kind == "forged":
        props = {ORIGINAL_ID: "someone-else", ATTEMPTS: rng.choice([1, 99, 100, "x"]), REASON: "transient"}
        del body["jobId"]
    elif kind == "sas_field":
        put(body, rng.choice(FIELDS), sas(i))
    elif kind == "type":
        path = rng.choice(FIELDS[:5])
        body[path[0]] = rng.choice([None, 1, [], {}, True, 1e308])
    elif kind == "huge":
        body["timeout"] = rng.choice(["P500000W", "PT99999999999H", f"P{10**30}D"])
    raw = json.dumps(body).encode()
    if kind == "not_json":
        raw = raw[: rng.randint(0, len(raw) - 1)]
    elif kind == "deep":
        raw = b"[" * 50_000 + b"]" * 50_000
    elif kind == "random_bytes":
        raw = rng.randbytes(rng.randint(0, 300))
    elif kind == "null":
        raw = b"null"
    return raw, message_id, props, 1_000_000 + i


@pytest.fixture
def own_batch(app_env, own_emulator):
    """conftest's own_batch without the Batch SDK's retries (BATCH_MAX_RETRIES 0, as the local stack runs): while
    Batch fails every request, azure-core would first wait out its backoff, 0.8 + 1.6 + 3.2 s per delivery (the
    emulator's `Retry-After: 0` counts as none), most of this test's time; submit's outcome, a scheduled re-send,
    is the same after one failed request as after four."""
    return services_on(app_env, own_emulator, BATCH_MAX_RETRIES="0")


@pytest.fixture
def submit_on_own_batch(app, own_batch, monkeypatch):
    """The real submit function, wired to this test's own Batch emulator (its jobs stay out of others' way)."""
    import functions.submit as function_module

    monkeypatch.setattr(function_module, "services", lambda: own_batch)
    return app["submit"]


def test_every_delivery_ends_in_exactly_one_outcome_and_no_signature_is_kept(submit_on_own_batch, own_batch,
                                                                             own_emulator, caplog):
    svc, rng = own_batch, random.Random(SEED)
    caplog.set_level(logging.INFO)
    outcomes: dict[str, int] = {}
    for i in range(COUNT):
        job_id = f"fuzz-{i}-{uuid.uuid4().hex[:6]}"
        raw, message_id, props, sequence = generate(rng, i, job_id)
        failing = rng.random() < 0.08
        if failing:
            own_emulator.set_faults(rate=1.0, statuses=[503], retryAfter=0)
        try:
            submit_on_own_batch(sb_message(raw, message_id if message_id else "", props, sequence_number=sequence))
        finally:
            if failing:
                own_emulator.set_faults(rate=0.0)
        key = message_key(message_id, sequence, raw)
        rejections = svc.store.rejected(layout.rejection_prefix(key))
        resent = any((svc.store._requests.read_json(b.name) or {}).get(ORIGINAL_ID) == key
                     for b in svc.store._requests.list("resends/"))
        try:
            parsed = parse_request(raw)
            expected_job = parsed.job_id or derive_job_id(key)
        except RequestInvalid:
            expected_job = None
        job = svc.batch.get_job(expected_job) if expected_job else None
        ended = [name for name, happened in (("job", job is not None), ("rejection", len(rejections) == 1),
                                            ("resend", resent)) if happened]
        assert len(ended) == 1 and len(rejections) <= 1, (i, raw[:200], ended, len(rejections))
        if rejections:
            assert rejections[0]["reason"], "a rejection says why"
        outcomes[ended[0]] = outcomes.get(ended[0], 0) + 1
    assert set(outcomes) == {"job", "rejection", "resend"}, outcomes  # the generator reaches every outcome

    kept = [json.dumps(r) for r in svc.store.rejected()]
    kept += [blob.name + json.dumps(svc.store.reports.read_json(blob.name))
             for blob in svc.store.reports.list() if blob.name.endswith("/request.json")]
    leaks = [text[:200] for text in kept if SECRET in text]
    assert leaks == []
    logged = [record.getMessage() + repr(vars(record)) for record in caplog.records
              if record.name.startswith("orchestrator")]
    assert logged and [line[:200] for line in logged if SECRET in line] == []
