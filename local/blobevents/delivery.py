"""Push delivery to webhook subscriptions, the way Event Grid delivers: at least once, one event per POST.

Modelled on https://learn.microsoft.com/azure/event-grid/delivery-and-retry:
- each event is POSTed alone, in a JSON array of one, with the `aeg-*` headers
  (https://learn.microsoft.com/azure/event-grid/handler-event-hubs#message-headers lists them);
- 200, 201, 202, 203 and 204 are success; 400, 401, 403 and 413 are not retried (Event Grid drops or
  dead-letters those; locally they are dropped, with a log line); anything else, a timeout (30 s) or a
  refused connection is retried with exponential backoff until maxDeliveryAttempts or the time to live
  runs out. Event Grid's schedule starts at 10 s and grows to hourly over 24 h; locally it starts at
  `Backoff.initial` (1 s) and doubles up to `Backoff.maximum` (60 s), so a subscriber that is down for a
  while still gets its events within a minute of coming back. There is no dead-letter destination.
- every event is delivered by its own task, so one slow or failing event never holds back the others
  (Event Grid does not promise order either).
- creating a subscription runs the synchronous validation handshake
  (https://learn.microsoft.com/azure/event-grid/end-point-validation-event-grid-events-schema): the endpoint
  gets a SubscriptionValidationEvent and must answer 200 with `{"validationResponse": <validationCode>}`.
  The asynchronous variant (GET on validationUrl) is not offered.

Pending deliveries live in memory: stopping the stand-in loses them (Event Grid keeps them for 24 h).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any

import aiohttp

from .events import Subscription, validation_event

log = logging.getLogger("local.blobevents.delivery")

SUCCESS = {200, 201, 202, 203, 204}
NOT_RETRIED = {400, 401, 403, 413}


@dataclass(frozen=True)
class Backoff:
    initial: float = 1.0
    maximum: float = 60.0
    attempt_timeout: float = 30.0  # Event Grid waits 30 s for an answer before it counts the attempt as failed


class HandshakeFailed(Exception):
    pass


class Broker:
    def __init__(self, backoff: Backoff | None = None) -> None:
        self.backoff = backoff or Backoff()
        self.subscriptions: dict[str, Subscription] = {}
        self.published = 0
        self._pending: dict[str, set[asyncio.Task]] = {}
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=64),
            timeout=aiohttp.ClientTimeout(total=self.backoff.attempt_timeout))

    async def close(self) -> None:
        tasks = [t for pending in self._pending.values() for t in pending]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if tasks:
            log.warning("stopped with deliveries still pending; they are lost", extra={"pending": len(tasks)})
        if self._session:
            await self._session.close()

    # -- subscriptions ---------------------------------------------------------------------------------

    async def subscribe(self, subscription: Subscription) -> bool:
        """Validate the endpoint, then add or replace; True when it is new."""
        await self._handshake(subscription)
        created = subscription.name not in self.subscriptions
        if not created:
            self._cancel(subscription.name)
        self.subscriptions[subscription.name] = subscription
        self._pending[subscription.name] = set()
        log.info("subscription " + ("created" if created else "replaced"),
                 extra={"subscription": subscription.name, "endpoint": _without_query(subscription.endpoint_url),
                        "subject_begins_with": subscription.subject_begins_with,
                        "subject_ends_with": subscription.subject_ends_with})
        return created

    def unsubscribe(self, name: str) -> bool:
        if self.subscriptions.pop(name, None) is None:
            return False
        self._cancel(name)
        self._pending.pop(name, None)
        log.info("subscription deleted", extra={"subscription": name})
        return True

    def pending(self, name: str) -> int:
        return len(self._pending.get(name, ()))

    def _cancel(self, name: str) -> None:
        for task in self._pending.get(name, ()):
            task.cancel()

    async def _handshake(self, subscription: Subscription) -> None:
        assert self._session is not None
        code = str(uuid.uuid4())
        where = _without_query(subscription.endpoint_url)
        try:
            async with self._session.post(subscription.endpoint_url, data=json.dumps([validation_event(code)]),
                                          headers=self._headers(subscription, "SubscriptionValidation", 0)) as resp:
                text = await resp.text()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise HandshakeFailed(f"webhook validation handshake failed for {where}: "
                                  f"{type(exc).__name__}: {exc}") from None
        try:
            answer = json.loads(text).get("validationResponse") if status == 200 else None
        except (ValueError, AttributeError):
            answer = None
        if answer != code:
            raise HandshakeFailed(f"webhook validation handshake failed for {where}: HTTP {status} without the "
                                  "validation code; the endpoint must answer a SubscriptionValidation request with "
                                  '200 and {"validationResponse": <data.validationCode>}')

    # -- events ----------------------------------------------------------------------------------------

    def publish(self, event: dict[str, Any], audience: list[Subscription]) -> int:
        """Start delivering `event` to every matching subscription of `audience` (the subscriptions when the
        event happened); returns how many matched."""
        self.published += 1
        matched = 0
        for subscription in audience:
            # One deleted (or replaced) since the event happened gets nothing.
            if self.subscriptions.get(subscription.name) is not subscription or not subscription.matches(event):
                continue
            matched += 1
            subscription.counters.matched += 1
            pending = self._pending[subscription.name]
            task = asyncio.get_running_loop().create_task(self._deliver(subscription, event),
                                                          name=f"deliver:{subscription.name}")
            pending.add(task)
            task.add_done_callback(pending.discard)
        return matched

    async def _deliver(self, subscription: Subscription, event: dict[str, Any]) -> None:
        assert self._session is not None
        body = json.dumps([event])
        expires = time.monotonic() + subscription.ttl_minutes * 60
        delay = self.backoff.initial
        counters = subscription.counters
        for attempt in range(subscription.max_delivery_attempts):
            status: int | None = None
            error = ""
            try:
                async with self._session.post(subscription.endpoint_url, data=body,
                                              headers=self._headers(subscription, "Notification", attempt)) as resp:
                    status = resp.status
                    await resp.read()
            except asyncio.CancelledError:
                raise
            except (aiohttp.ClientError, TimeoutError) as exc:
                error = f"{type(exc).__name__}: {exc}"
            if status in SUCCESS:
                counters.delivered += 1
                return
            counters.failed_attempts += 1
            reason = f"HTTP {status}" if status is not None else error
            if status in NOT_RETRIED:
                counters.dropped += 1
                log.error("event dropped: the endpoint answered a code Event Grid does not retry",
                          extra={"subscription": subscription.name, "subject": event["subject"], "status": status})
                return
            if attempt + 1 >= subscription.max_delivery_attempts or time.monotonic() + delay > expires:
                break
            log.info("delivery failed; retrying", extra={"subscription": subscription.name, "reason": reason,
                                                         "attempt": attempt + 1, "retry_in_s": delay})
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.backoff.maximum)
        counters.dropped += 1
        log.error("event dropped after its last delivery attempt", extra={
            "subscription": subscription.name, "subject": event["subject"], "attempts": attempt + 1})

    @staticmethod
    def _headers(subscription: Subscription, kind: str, attempt: int) -> dict[str, str]:
        return {"Content-Type": "application/json; charset=utf-8", "aeg-event-type": kind,
                "aeg-subscription-name": subscription.name.upper(), "aeg-delivery-count": str(attempt),
                "aeg-data-version": "", "aeg-metadata-version": "1"}


def _without_query(url: str) -> str:
    # Endpoint URLs may carry a key (`code=`, as the blob extension's do): keep it out of the logs.
    return url.split("?", 1)[0]
