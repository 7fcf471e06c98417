from __future__ import annotations

import pytest

from shared.pure.redact import redact_sas


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("https://a.blob.core.windows.net/c/f?sv=2024-05-04&sp=r&sig=abc%2Bdef%3D",
         "https://a.blob.core.windows.net/c/f?sv=2024-05-04&sp=r&sig=REDACTED"),
        ("https://a/c?sig=abc&se=2026-01-01", "https://a/c?sig=REDACTED&se=2026-01-01"),
        ('{"url": "https://a/c?SIG=abc"}', '{"url": "https://a/c?SIG=REDACTED"}'),
        ('"https://a/c?sv=1\\u0026sig=abc"', '"https://a/c?sv=1\\u0026sig=REDACTED"'),
        ("two: ?sig=a and &sig=b", "two: ?sig=REDACTED and &sig=REDACTED"),
        ("no token here: signature=abc, mysig=abc", "no token here: signature=abc, mysig=abc"),
        ("", ""),
    ],
)
def test_redact_sas(text, expected):
    assert redact_sas(text) == expected


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("ERROR upload to https://a/c?sp=w&sig=abc failed", "ERROR upload to https://a/c?sp=w&sig=REDACTED failed"),
        ("DefaultEndpointsProtocol=https;AccountName=a;AccountKey=abc123==;EndpointSuffix=x",
         "DefaultEndpointsProtocol=https;AccountName=a;AccountKey=REDACTED;EndpointSuffix=x"),
        ("Error: password=hunter2 rejected", "Error: password=REDACTED rejected"),
        ('fatal: {"token": "abc.def"}', 'fatal: {"token": "REDACTED"}'),
        ("Authorization: Bearer abcdefghijklmnop", "Authorization: Bearer REDACTED"),
        ("jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.sig done", "jwt REDACTED-JWT done"),
        ("-----BEGIN RSA PRIVATE KEY----- MIIE", "REDACTED-PRIVATE-KEY"),
        ("Traceback (most recent call last): KeyError: 'x'", "Traceback (most recent call last): KeyError: 'x'"),
        ("the token count is high", "the token count is high"),
    ],
)
def test_redact_secrets(line, expected):
    from shared.pure.redact import redact_secrets

    assert redact_secrets(line) == expected
