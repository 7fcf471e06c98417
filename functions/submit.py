"""Service Bus trigger: one job request in, one Batch job out (`shared.flows.submit.on_message`)."""

from __future__ import annotations

from datetime import UTC, datetime

import azure.functions as func

from shared.adapters.services import services
from shared.flows.submit import on_message
from shared.pure.settings import QUEUE_SETTING, SERVICE_BUS_CONNECTION

bp = func.Blueprint()


@bp.function_name("submit")
@bp.service_bus_queue_trigger(arg_name="msg", queue_name=f"%{QUEUE_SETTING}%", connection=SERVICE_BUS_CONNECTION)
def submit_job(msg: func.ServiceBusMessage) -> None:
    on_message(msg.get_body(), msg.message_id, dict(msg.application_properties or {}), datetime.now(UTC),
               services(), sequence_number=msg.sequence_number)
