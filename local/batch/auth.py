"""Shared Key verification, computed exactly as the azure-batch SDK signs (see its BatchSharedKeyAuthPolicy)."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from urllib.parse import parse_qs

SIGNED_HEADERS = (
    "content-encoding",
    "content-language",
    "content-length",
    "content-md5",
    "content-type",
    "date",
    "if-modified-since",
    "if-match",
    "if-none-match",
    "if-unmodified-since",
    "range",
)


def string_to_sign(method: str, raw_path: str, raw_query: str, headers: Mapping[str, str], account: str) -> str:
    lowered = {k.lower(): v for k, v in headers.items() if v}
    if method not in ("GET", "HEAD"):
        lowered.setdefault("content-length", "0")
    parts = [method, *(str(lowered.get(h, "")) for h in SIGNED_HEADERS)]
    text = "\n".join(parts) + "\n"
    for name, value in sorted((k, v) for k, v in lowered.items() if "ocp-" in k):
        text += f"{name}:{value}\n"
    text += f"/{account}{raw_path}"
    query = parse_qs(raw_query)
    for name in sorted(query):
        if query[name][0]:
            text += f"\n{name}:{query[name][0]}"
    return text


def sign(key: str, text: str) -> str:
    digest = hmac.new(base64.b64decode(key), text.encode("utf-8"), hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def authorization(account: str, key: str, method: str, raw_path: str, raw_query: str,
                  headers: Mapping[str, str]) -> str:
    return f"SharedKey {account}:{sign(key, string_to_sign(method, raw_path, raw_query, headers, account))}"


def verify(account: str, key: str, method: str, raw_path: str, raw_query: str,
           headers: Mapping[str, str]) -> str | None:
    """Return None when the request is signed by the account's key, else the reason it is not."""
    header = headers.get("Authorization") or headers.get("authorization")
    if not header:
        return "the request carries no Authorization header"
    scheme, _, credential = header.partition(" ")
    if scheme != "SharedKey" or ":" not in credential:
        return "the Authorization header is not of the form 'SharedKey account:signature'"
    name, _, signature = credential.partition(":")
    if name != account:
        return f"the account name in the Authorization header is not {account!r}"
    expected = sign(key, string_to_sign(method, raw_path, raw_query, headers, account))
    if not hmac.compare_digest(expected, signature):
        return "the MAC signature does not match the one computed with the account key"
    return None
