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


SAS = "https://acct.blob.core.windows.net/in/tool.sh?sv=2024-05-04&sp=r&sig=TOPSECRET%3D"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a https%3A%2F%2Fa%2Fb%3Fsv%3D1%26sig%3DTOPSECRET%26se%3Dx b", "a https%3A%2F%2Fa%2Fb%3Fsv%3D1%26sig%3DREDACTED%26se%3Dx b"),
        ('<a href="https://a/b?sv=1&amp;sig=TOPSECRET">', '<a href="https://a/b?sv=1&amp;sig=REDACTED">'),
        ("Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=Root;SharedAccessKey=TOPSECRET=",
         "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=Root;SharedAccessKey=REDACTED"),
        ("SharedAccessSignature sr=sb%3a%2f%2fns&sig=TOPSECRET&se=1&skn=Root",
         "SharedAccessSignature sr=sb%3a%2f%2fns&sig=REDACTED&se=1&skn=Root"),
        ("BATCH_ACCOUNT_KEY: TOPSECRET==", "BATCH_ACCOUNT_KEY: REDACTED"),
        ("AZURE_CLIENT_SECRET=TOPSECRET", "AZURE_CLIENT_SECRET=REDACTED"),
        ("monkey: banana, the keyboard=qwerty", "monkey: banana, the keyboard=qwerty"),
        ("account key=TOPSECRET==", "account key=REDACTED"),
        ("x-ms-date: now; Authorization: SharedKey acct:TOPSECRET=", "x-ms-date: now; Authorization: SharedKey acct:REDACTED"),
    ],
)
def test_redact_secrets_in_other_spellings(text, expected):
    from shared.pure.redact import redact_secrets

    assert redact_secrets(text) == expected


# A request with a SAS URL in every field that can hold text: each one comes back without the signature.
REQUEST_FIELDS = ["jobId", "poolId", "timeout", "preparation.commandLine", "preparation.resourceFiles.0.httpUrl",
                  "environment.NAME", f"environment.{SAS}", "tasks.0.id", "taskFactory.idFormat", "unknown"]


@pytest.mark.parametrize("field", REQUEST_FIELDS)
def test_redact_value_reaches_every_field_and_key(field):
    from shared.pure.redact import redact_value

    value: object = SAS
    for part in reversed(field.split(".")):
        value = [value] if part.isdigit() else {part: value}
    assert "TOPSECRET" not in repr(redact_value(value))


def test_the_log_filter_redacts_message_arguments_extras_and_tracebacks():
    import logging

    from shared.pure.redact import RedactingFilter

    try:
        raise ValueError(f"bad url {SAS}")
    except ValueError:
        import sys

        exc_info = sys.exc_info()
    record = logging.LogRecord("orchestrator.test", logging.ERROR, __file__, 1, "fetch %s failed", (SAS,), exc_info)
    record.request = {"url": SAS, "nested": [SAS]}
    record.reason = f"reason: {SAS}"
    assert RedactingFilter().filter(record) is True
    line = logging.Formatter("%(message)s %(request)s %(reason)s").format(record)
    assert "TOPSECRET" not in line and line.count("sig=REDACTED") == 5  # message, two in request, reason, traceback


@pytest.mark.parametrize(("name", "secret"), [
    ("DB_PASSWORD", True), ("API_KEY", True), ("AZURE_CLIENT_SECRET", True), ("sasToken", True),
    ("AccountKey", True), ("STORAGE_CONNECTION_STRING", True), ("github_token", True), ("pwd", True),
    ("KEYBOARD_LAYOUT", False), ("DEMO_FILE", False), ("MONKEY", False), ("TOKENIZER_PATH", False), ("keys", False),
])
def test_a_value_is_redacted_whole_when_its_name_says_secret(name, secret):
    from shared.pure.redact import redact_value

    redacted = redact_value({"environment": {name: "hunter2"}})
    assert (redacted["environment"][name] == "REDACTED") is secret
