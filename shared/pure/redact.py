"""Keep SAS signatures out of what the orchestrator stores about a request.

A rejected request is kept as the user sent it, so they can see what was refused; its resource file
URLs may carry SAS tokens, and a token's signature is the secret part. The rest of the URL (account,
container, permissions, expiry) stays readable.
"""

from __future__ import annotations

import re

# `sig=` as a query parameter, after `?` or `&`, also written `\u0026` inside JSON strings.
_SAS_SIGNATURE = re.compile(r"(?i)((?:[?&]|\\u0026)sig=)[^&#\s\"'<>\\]+")


def redact_sas(text: str) -> str:
    return _SAS_SIGNATURE.sub(r"\1REDACTED", text)


# What a log line may carry besides a SAS: keys in connection strings, bearer tokens, JWTs, private keys,
# and `password=` / `token=` / `secret=` style assignments. Cut to the name, so a reader still sees what
# kind of secret was there.
_SECRETS = [
    (re.compile(r"(?i)\b((?:Account|Shared)?Key|SharedAccessKey|AccessKey|password|passwd|pwd|secret|token|"
                r"client_secret|api[_-]?key)(\"?\s*[=:]\s*)(\"?)[^\s\"';&,]+"), r"\1\2\3REDACTED"),
    (re.compile(r"(?i)\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]{8,}"), r"\1 REDACTED"),
    (re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*"), "REDACTED-JWT"),
    (re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*", re.DOTALL), "REDACTED-PRIVATE-KEY"),
]


def redact_secrets(text: str) -> str:
    """A SAS signature and the obvious secrets out of a line of text a user will read."""
    text = redact_sas(text)
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text
