"""Batch's error body: an OData error with a code, an English message and key/value details."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TypeVar

T = TypeVar("T")


class BatchError(Exception):
    def __init__(self, status: int, code: str, message: str, **values: str):
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.values = values

    def body(self, base_url: str) -> dict:
        request_id = str(uuid.uuid4())
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        body = {
            "odata.metadata": f"{base_url}/$metadata#Microsoft.Azure.Batch.Protocol.Entities.Container.errors/@Element",
            "code": self.code,
            "message": {"lang": "en-US", "value": f"{self.message}\nRequestId:{request_id}\nTime:{stamp}"},
        }
        if self.values:
            body["values"] = [{"key": k, "value": str(v)} for k, v in self.values.items()]
        return body


def not_found(kind: str, ident: str) -> BatchError:
    return BatchError(404, f"{kind}NotFound", f"The specified {kind.lower()} does not exist.", **{f"{kind}Id": ident})


def lookup(items: Mapping[str, T], key: str, kind: str) -> T:
    """items[key], or Batch's {kind}NotFound."""
    found = items.get(key)
    if found is None:
        raise not_found(kind, key)
    return found


def missing_property(name: str) -> BatchError:
    return BatchError(
        400, "MissingRequiredProperty", "A required property was not specified in the request body.",
        PropertyName=name,
    )


def invalid_property(name: str, value: object, reason: str) -> BatchError:
    return BatchError(
        400, "InvalidPropertyValue", "The value provided for one of the properties in the request body is invalid.",
        PropertyName=name, PropertyValue=str(value)[:256], Reason=reason,
    )


def invalid_query(name: str, value: object, reason: str) -> BatchError:
    return BatchError(
        400, "InvalidQueryParameterValue", "Value for one of the query parameters specified in the request URI is invalid.",
        QueryParameterName=name, QueryParameterValue=str(value)[:256], Reason=reason,
    )
