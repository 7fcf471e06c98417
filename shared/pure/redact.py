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
