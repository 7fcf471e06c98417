"""A local Entra ID stand-in: tokens DefaultAzureCredential fetches, and their check on $cbs.

The emulator answers the managed identity protocol that DefaultAzureCredential (ManagedIdentityCredential)
speaks on App Service: with `IDENTITY_ENDPOINT=http://127.0.0.1:<port>/identity/token` and
`IDENTITY_HEADER=<DEV_IDENTITY_HEADER>` in the environment, `GET ...?api-version=2019-08-01&resource=...`
with the `X-IDENTITY-HEADER` header gets `{access_token, expires_on, resource, token_type}`. The token is
a JWT signed (RS256) with the emulator's issuer key (devtls.py), for the requested resource, and a CBS
`put-token` of type `jwt` is checked as Service Bus checks Entra ID tokens: signature, issuer, audience
(`https://servicebus.azure.net`, the scope the SDK asks for, or the namespace itself), not-before and
expiry. Like the SAS dev key, the header value is fixed and public: it protects nothing, it lets the
credential code run as it does in Azure.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from urllib.parse import urlsplit

import jwt
from cryptography.hazmat.primitives import serialization

from .cbs import Grant, TokenRejected

IDENTITY_PATH = "/identity/token"
DEV_IDENTITY_HEADER = "local-servicebus-dev-identity"
TENANT_ID = "00000000-0000-0000-0000-00000000e1a0"
ISSUER = f"https://sts.windows.net/{TENANT_ID}/"
SERVICE_BUS_AUDIENCE = "https://servicebus.azure.net"
DEFAULT_PRINCIPAL = "00000000-0000-0000-0000-00000000c1d0"
TOKEN_LIFETIME_S = 3600


class Issuer:
    def __init__(self, key_pem: bytes, clock: Callable[[], float] = time.time) -> None:
        self._key = serialization.load_pem_private_key(key_pem, password=None)
        self._public = self._key.public_key()
        self.clock = clock

    def issue(self, resource: str, principal: str = DEFAULT_PRINCIPAL, lifetime_s: int = TOKEN_LIFETIME_S) -> tuple[str, int]:
        now = int(self.clock())
        claims = {"aud": resource.rstrip("/"), "iss": ISSUER, "iat": now, "nbf": now - 60, "exp": now + lifetime_s,
                  "oid": principal, "sub": principal, "appid": principal, "tid": TENANT_ID,
                  "uti": uuid.uuid4().hex, "ver": "1.0"}
        return jwt.encode(claims, self._key, algorithm="RS256", headers={"kid": "local-servicebus"}), now + lifetime_s

    def answer(self, query: dict[str, str], headers: dict[str, str]) -> tuple[int, dict]:
        """The App Service managed identity endpoint: (status, JSON body)."""
        if headers.get("x-identity-header") != DEV_IDENTITY_HEADER:
            return 401, {"error": "unauthorized", "error_description": "X-IDENTITY-HEADER is missing or wrong; set "
                         f"IDENTITY_HEADER={DEV_IDENTITY_HEADER}"}
        resource = query.get("resource")
        if not resource:
            return 400, {"error": "invalid_request", "error_description": "resource is required"}
        principal = query.get("client_id") or query.get("principal_id") or query.get("mi_res_id") or DEFAULT_PRINCIPAL
        token, expires = self.issue(resource, principal)
        return 200, {"access_token": token, "expires_on": str(expires), "resource": resource,
                     "token_type": "Bearer", "client_id": principal}

    def verify(self, token: str, audience: str, now_s: float) -> Grant:
        """A CBS put-token of type jwt, for `audience` (the entity or namespace URI the client named)."""
        host = urlsplit(audience).hostname or ""
        accepted = [SERVICE_BUS_AUDIENCE, SERVICE_BUS_AUDIENCE + "/", f"https://{host}", f"https://{host}/",
                    f"sb://{host}", f"sb://{host}/"]
        try:
            # exp and nbf are compared below with the broker's clock, not PyJWT's.
            claims = jwt.decode(token, self._public, algorithms=["RS256"], audience=accepted, issuer=ISSUER,
                                options={"require": ["exp", "aud", "iss"], "verify_exp": False,
                                         "verify_nbf": False, "verify_iat": False})
        except jwt.InvalidAudienceError as exc:
            raise TokenRejected(f"InvalidAudience: the token's audience is not {SERVICE_BUS_AUDIENCE}") from exc
        except jwt.InvalidIssuerError as exc:
            raise TokenRejected("InvalidIssuer: the token was not issued by the local identity endpoint") from exc
        except jwt.InvalidSignatureError as exc:
            raise TokenRejected("InvalidSignature: the token's signature does not match the local issuer") from exc
        except jwt.PyJWTError as exc:
            raise TokenRejected(f"InvalidToken: {exc}") from exc
        if float(claims["exp"]) <= now_s:
            raise TokenRejected("ExpiredToken: the token is expired")
        if float(claims.get("nbf", 0)) > now_s:
            raise TokenRejected("InvalidToken: the token is not valid yet")
        return Grant(path="", expires_s=int(claims["exp"]))
