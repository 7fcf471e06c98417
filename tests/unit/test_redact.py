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
