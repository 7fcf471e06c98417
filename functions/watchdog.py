"""Timer trigger: one watchdog sweep over the managed jobs."""

from __future__ import annotations

from datetime import UTC, datetime

import azure.functions as func

from shared.services import services
from shared.settings import SCHEDULE_SETTING
from shared.watchdog import Watchdog
from shared.watchdog_policy import Policy

bp = func.Blueprint()


@bp.function_name("watchdog")
@bp.timer_trigger(arg_name="timer", schedule=f"%{SCHEDULE_SETTING}%", run_on_startup=False, use_monitor=True)
def watchdog(timer: func.TimerRequest) -> None:
    s = services()
    policy = Policy(retention=s.settings.retention)
    Watchdog(s.batch, s.store, policy, allowed_pools=s.settings.allowed_pools).sweep(datetime.now(UTC))
