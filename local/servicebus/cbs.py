"""Claims-based security: checking the SAS tokens clients put on the $cbs node."""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from urllib.parse import quote_plus, unquote_plus

from . import links


class TokenRejected(ValueError):
    """Why a token was refused; the text goes back to the client as the status description."""


@dataclass(frozen=True, slots=True)
class Grant:
    path: str  # entity path the token covers, lower case; "" is the whole namespace
    expires_s: int


def audience_path(audience: str) -> str:
    """'sb://host:port/jobs/$DeadLetterQueue' or 'amqps://host/jobs' -> 'jobs/$deadletterqueue'."""
    return links.entity_path(audience).lower()


def covers(grant_path: str, entity_path: str) -> bool:
    entity_path = entity_path.lower()
    return grant_path == "" or entity_path == grant_path or entity_path.startswith(grant_path + "/")


def verify_sas(token: str, audience: str, key_name: str, key: str, now_s: float) -> Grant:
    """Check a 'SharedAccessSignature sr=..&sig=..&se=..&skn=..' token the way Service Bus does."""
    prefix = "SharedAccessSignature "
    if not token.startswith(prefix):
        raise TokenRejected("InvalidSignature: the token is not a SharedAccessSignature")
    fields: dict[str, str] = {}
    for part in token[len(prefix):].split("&"):
        name, sep, value = part.partition("=")
        if not sep:
            raise TokenRejected("InvalidSignature: malformed token field")
        fields[name] = unquote_plus(value)
    missing = {"sr", "sig", "se", "skn"} - set(fields)
    if missing:
        raise TokenRejected(f"InvalidSignature: token lacks {', '.join(sorted(missing))}")
    if fields["skn"] != key_name:
        raise TokenRejected(f"InvalidSignature: unknown shared access key name {fields['skn']!r}")
    try:
        expiry = int(fields["se"])
        given = base64.b64decode(fields["sig"], validate=True)
    except ValueError as exc:
        raise TokenRejected("InvalidSignature: malformed expiry or signature") from exc
    to_sign = f"{quote_plus(fields['sr'])}\n{fields['se']}".encode()
    expected = hmac.new(key.encode(), to_sign, hashlib.sha256).digest()
    if not hmac.compare_digest(given, expected):
        raise TokenRejected("InvalidSignature: the token has an invalid signature")
    if expiry <= now_s:
        raise TokenRejected("ExpiredToken: the token is expired")
    grant = Grant(path=audience_path(fields["sr"]), expires_s=expiry)
    if not covers(grant.path, audience_path(audience)):
        raise TokenRejected(f"InvalidAudience: the token is for {fields['sr']!r}, not {audience!r}")
    return grant
