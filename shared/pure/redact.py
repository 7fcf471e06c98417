"""Keep SAS signatures out of what the orchestrator stores about a request.

A rejected request is kept as the user sent it, so they can see what was refused; its resource file
URLs may carry SAS tokens, and a token's signature is the secret part. The rest of the URL (account,
container, permissions, expiry) stays readable.
"""

from __future__ import annotations

import logging
import re

# `sig=` as a query parameter, after `?` or `&`, also written `\u0026` inside JSON strings and `&amp;` in
# HTML; and a whole URL percent-encoded into another one's query (`%3Fsig%3D...`).
_SAS_SIGNATURE = re.compile(r"(?i)((?:[?&]|\\u0026|&amp;)sig=)[^&#\s\"'<>\\]+")
_ENCODED_SAS_SIGNATURE = re.compile(r"(?i)((?:%3F|%26)sig%3D)(?:(?!%26)[^&#\s\"'<>\\])+")


def redact_sas(text: str) -> str:
    return _ENCODED_SAS_SIGNATURE.sub(r"\1REDACTED", _SAS_SIGNATURE.sub(r"\1REDACTED", text))


# What a log line may carry besides a SAS: keys in connection strings, bearer tokens, JWTs, private keys,
# and `password=` / `token=` / `secret=` style assignments. Cut to the name, so a reader still sees what
# kind of secret was there.
_SECRETS = [
    # Also as the end of a longer name: BATCH_ACCOUNT_KEY=..., AZURE_CLIENT_SECRET: ...
    (re.compile(r"(?i)\b((?:[A-Za-z0-9]+_)*(?:(?:Account|Shared)?Key|SharedAccessKey|AccessKey|password|passwd|pwd|"
                r"secret|token|client_secret|api[_-]?key))(\"?\s*[=:]\s*)(\"?)[^\s\"';&,]+"), r"\1\2\3REDACTED"),
    (re.compile(r"(?i)\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]{8,}"), r"\1 REDACTED"),
    # A Shared Key request signature: replayable for as long as the request's date is accepted.
    (re.compile(r"\b(SharedKey(?:Lite)?\s+[^:\s]+:)[A-Za-z0-9+/=]+"), r"\1REDACTED"),
    (re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*"), "REDACTED-JWT"),
    (re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*", re.DOTALL), "REDACTED-PRIVATE-KEY"),
]


def redact_secrets(text: str) -> str:
    """A SAS signature and the obvious secrets out of a line of text a user will read."""
    text = redact_sas(text)
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text


# A name that says its value is a secret: DB_PASSWORD, API_KEY, AZURE_CLIENT_SECRET, sasToken, AccountKey.
_SECRET_NAME = re.compile(
    r"(?i)(?:^|[_.-])(?:(?:account|access|api|shared|private|secret|master|primary|secondary|storage|sas|"
    r"encryption|client|signing|subscription)[_-]?)?(?:key|secret|password|passwd|pwd|token|sig|signature|"
    r"credentials?|connection[_-]?string)$")
# camelCase: accountKey, sasToken, clientSecret (case matters, or MONKEY would be one).
_SECRET_CAMEL_NAME = re.compile(r"[a-z0-9](?:Key|Secret|Password|Token|Signature|ConnectionString)$")


def is_secret_name(name: str) -> bool:
    return bool(_SECRET_NAME.search(name) or _SECRET_CAMEL_NAME.search(name))



def redact_value(value: object) -> object:
    """A value that may be shown or stored: text redacted; lists and dicts walked (keys too), and the whole
    value of a key whose name says it is a secret (an environment variable DB_PASSWORD) replaced."""
    if isinstance(value, str):
        return redact_secrets(value)
    if isinstance(value, dict):
        return {redact_value(k): "REDACTED" if isinstance(k, str) and is_secret_name(k) and isinstance(v, str)
                else redact_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_value(v) for v in value]
    return value


_STANDARD_RECORD_FIELDS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message", "asctime", "taskName"}


class RedactingFilter(logging.Filter):
    """Every line the orchestrator logs passes here: the message (after its arguments are merged), every
    `extra` field, and the traceback, so a SAS, key or token in a request or an error never reaches the
    host's log, whichever handler the worker installed."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact_secrets(record.getMessage())
        record.args = None
        for key, value in list(vars(record).items()):
            if key not in _STANDARD_RECORD_FIELDS:
                setattr(record, key, redact_value(value))
        if record.exc_info and not record.exc_text:
            record.exc_text = redact_secrets(logging.Formatter().formatException(record.exc_info))
        return True


_FILTER = RedactingFilter()


def redacting_logger(name: str) -> logging.Logger:
    """The orchestrator's loggers. A filter on a logger applies to the records logged through that very
    logger only (not its children), so each one gets its own."""
    logger = logging.getLogger(name)
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)
    return logger
