"""A stand-in for Event Grid's Blob Storage events: a proxy in front of Azurite that pushes BlobCreated events."""

from .control import BlobEventsClient, BlobEventsError, BlobEventsProcess
from .delivery import Backoff, HandshakeFailed
from .events import BLOB_CREATED, Subscription
from .proxy import BlobEventsProxy

__all__ = ["BLOB_CREATED", "Backoff", "BlobEventsClient", "BlobEventsError", "BlobEventsProcess", "BlobEventsProxy",
           "HandshakeFailed", "Subscription"]
