"""Entra ID for the emulator: a local token issuer that DefaultAzureCredential reaches as a managed identity, and
the check of the bearer tokens Batch requests carry.

The issuer speaks the App Service managed identity protocol (GET IDENTITY_ENDPOINT?resource=...&api-version=
2019-08-01 with the X-IDENTITY-HEADER secret: https://learn.microsoft.com/azure/app-service/overview-managed-
identity#rest-endpoint-reference), so setting IDENTITY_ENDPOINT and IDENTITY_HEADER is all a client needs.
Tokens are JWTs signed with a per-run key (HS256: the emulator is both issuer and audience). A request is
refused as Batch refuses it, 401 AuthenticationFailed with an AuthenticationErrorDetail, when its token is not
one this issuer signed, is for another audience than https://batch.core.windows.net/, or has expired.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time

BATCH_AUDIENCE = "https://batch.core.windows.net/"
TOKEN_PATH = "/_emulator/identity/token"
TOKEN_SECONDS = 3600
DEV_OBJECT_ID = "00000000-0000-0000-0000-00000000ba7c"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Issuer:
    def __init__(self, issuer_url: str, key: bytes | None = None, header_secret: str | None = None):
        self.issuer_url = issuer_url
        self.key = key or secrets.token_bytes(32)
        # What IDENTITY_HEADER must hold; only a caller told it may ask for tokens.
        self.header_secret = header_secret or secrets.token_urlsafe(24)

    def _sign(self, signing_input: str) -> str:
        return _b64(hmac.new(self.key, signing_input.encode(), hashlib.sha256).digest())

    def issue(self, resource: str, lifetime: int = TOKEN_SECONDS, now: float | None = None) -> dict:
        """The managed identity endpoint's answer for `resource` (an audience such as BATCH_AUDIENCE)."""
        issued = int(now if now is not None else time.time())
        claims = {"aud": resource, "iss": self.issuer_url, "iat": issued, "nbf": issued, "exp": issued + lifetime,
                  "oid": DEV_OBJECT_ID, "sub": DEV_OBJECT_ID, "tid": "00000000-0000-0000-0000-000000000000"}
        head = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
        body = _b64(json.dumps(claims, separators=(",", ":")).encode())
        token = f"{head}.{body}.{self._sign(f'{head}.{body}')}"
        return {"access_token": token, "expires_on": str(issued + lifetime), "resource": resource,
                "token_type": "Bearer", "client_id": DEV_OBJECT_ID}

    def verify(self, token: str, now: float | None = None) -> str | None:
        """None when the token is good for Batch, else why not (in the words Batch uses)."""
        parts = token.split(".")
        if len(parts) != 3:
            return "The access token is not a valid JWT."
        if not hmac.compare_digest(self._sign(f"{parts[0]}.{parts[1]}"), parts[2]):
            return "The access token's signature is invalid: it was not issued by this emulator's token issuer."
        try:
            claims = json.loads(_unb64(parts[1]))
        except ValueError:
            return "The access token is not a valid JWT."
        moment = now if now is not None else time.time()
        if claims.get("aud") != BATCH_AUDIENCE:
            return (f"The access token has been obtained from wrong audience or resource '{claims.get('aud')}'. It "
                    f"should exactly match (including forward slash) with one of the allowed audiences "
                    f"'{BATCH_AUDIENCE}'")
        if claims.get("iss") != self.issuer_url:
            return f"The access token's issuer '{claims.get('iss')}' is not trusted."
        if int(claims.get("exp", 0)) <= moment:
            return f"The access token expiry time '{claims.get('exp')}' is earlier than the current time."
        if int(claims.get("nbf", 0)) > moment + 300:
            return "The access token is not yet valid."
        return None
