"""The token issuer's checks (local/batch/entra.py), with time injected: a table, no I/O."""

from __future__ import annotations

import pytest

from local.batch.entra import BATCH_AUDIENCE, Issuer

NOW = 1_800_000_000
ISSUER = Issuer("https://127.0.0.1:1/_emulator/identity/token/", key=b"k" * 32, header_secret="h")


@pytest.mark.parametrize(("resource", "lifetime", "checked_at", "ok"), [
    (BATCH_AUDIENCE, 3600, NOW, True),
    (BATCH_AUDIENCE, 3600, NOW + 3599, True),
    (BATCH_AUDIENCE, 3600, NOW + 3600, False),
    (BATCH_AUDIENCE, -1, NOW, False),
    ("https://batch.core.windows.net", 3600, NOW, False),
    ("https://management.azure.com/", 3600, NOW, False),
])
def test_verify(resource, lifetime, checked_at, ok):
    token = ISSUER.issue(resource, lifetime, now=NOW)["access_token"]
    assert (ISSUER.verify(token, now=checked_at) is None) is ok


def test_a_token_from_another_issuer_key_is_refused():
    other = Issuer(ISSUER.issuer_url, key=b"x" * 32)
    token = other.issue(BATCH_AUDIENCE, now=NOW)["access_token"]
    assert "signature is invalid" in ISSUER.verify(token, now=NOW)
