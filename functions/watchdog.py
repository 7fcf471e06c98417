"""Timer trigger: one watchdog sweep over the managed jobs (`shared.flows.watchdog.sweep`)."""

from __future__ import annotations

from datetime import UTC, datetime

import azure.functions as func

from shared.adapters.services import services
from shared.flows.watchdog import sweep
from shared.pure.settings import SCHEDULE_SETTING

bp = func.Blueprint()


@bp.function_name("watchdog")
@bp.timer_trigger(arg_name="timer", schedule=f"%{SCHEDULE_SETTING}%", run_on_startup=False, use_monitor=True)
def watchdog(timer: func.TimerRequest) -> None:
    sweep(services(), datetime.now(UTC))
