"""Service Bus trigger: one job request in, one Batch job out."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import azure.functions as func

from shared.batch import QuotaReached
from shared.services import services
from shared.settings import QUEUE_SETTING, SERVICE_BUS_CONNECTION
from shared.submit import submit

bp = func.Blueprint()
log = logging.getLogger("orchestrator.functions.submit")

# A quota-delayed request is re-sent under a new MessageId (duplicate detection would drop the same one);
# the original id travels along so the derived job id stays the same.
ORIGINAL_ID = "orchestrator-original-message-id"
QUOTA_ATTEMPTS = "orchestrator-quota-attempts"


def quota_delay(attempts: int) -> timedelta:
    return timedelta(seconds=min(30 * 2 ** min(attempts, 10), 900))


@bp.function_name("submit")
@bp.service_bus_queue_trigger(arg_name="msg", queue_name=f"%{QUEUE_SETTING}%", connection=SERVICE_BUS_CONNECTION)
def submit_job(msg: func.ServiceBusMessage) -> None:
    s = services()
    props = dict(msg.application_properties or {})
    message_id = str(props.get(ORIGINAL_ID) or msg.message_id)
    now = datetime.now(UTC)
    try:
        result = submit(msg.get_body(), message_id, s.batch, s.store, now,
                        allowed_pools=s.settings.allowed_pools, concurrency=s.settings.submit_concurrency)
    except QuotaReached:
        attempts = int(props.get(QUOTA_ATTEMPTS, 0)) + 1
        _redeliver_later(msg.get_body(), message_id, attempts, now + quota_delay(attempts), s)
        return
    log.info("submit finished", extra={"messageId": message_id, "result": type(result).__name__,
                                       "job": getattr(result, "job_id", None)})


def _redeliver_later(body: bytes, message_id: str, attempts: int, when: datetime, s) -> None:
    from azure.servicebus import ServiceBusMessage

    message = ServiceBusMessage(body, application_properties={ORIGINAL_ID: message_id, QUOTA_ATTEMPTS: attempts},
                                message_id=f"{message_id}~quota{attempts}", content_type="application/json")
    with s.service_bus() as client, client.get_queue_sender(s.settings.queue) as sender:
        sender.schedule_messages(message, when)
    log.info("active-job quota reached; request scheduled again", extra={
        "messageId": message_id, "attempt": attempts, "at": when.isoformat()})
