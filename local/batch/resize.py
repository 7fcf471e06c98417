"""Pool resize, stop resize and remove nodes, with Batch's allocation states (steady -> resizing -> steady,
stopping when a resize is stopped) and node deallocation options.

https://learn.microsoft.com/rest/api/batchservice/pool/resize: nodes join or leave while the pool is `resizing`;
on the way down idle nodes leave first; `requeue` and `terminate` take running tasks off the leaving nodes at
once (back to the queue, or ended as failed), `taskcompletion` and `retaineddata` let them finish first (the
emulator keeps no task data past its run, so retaineddata waits for the tasks as taskcompletion does).
"""

from __future__ import annotations

import asyncio

from local.batch.errors import BatchError, invalid_property, lookup
from local.batch.poolmodel import Node, Pool
from local.batch.pools import Pools
from local.batch.poolspec import DEALLOCATION_OPTIONS, MAX_NODES, parse_formula
from local.batch.state import AccountState
from local.batch.wire import optional

# How long an allocation takes: long enough to see `resizing`, and for stopresize to have something to stop.
ALLOCATION_SECONDS = 0.2
DRAIN_POLL_SECONDS = 0.05


def _dealloc(body: dict) -> str:
    option = body.get("nodeDeallocationOption") or "requeue"
    if option not in DEALLOCATION_OPTIONS:
        raise invalid_property("nodeDeallocationOption", option, "must be " + ", ".join(DEALLOCATION_OPTIONS))
    return option


def _steady(pool: Pool) -> None:
    if pool.allocation_state != "steady":
        raise BatchError(409, "PoolNotSteady", "The specified pool is not in a steady allocation state.",
                         PoolId=pool.id)


class Resizer:
    def __init__(self, state: AccountState, pools: Pools):
        self.state = state
        self.pools = pools
        self._running: dict[str, asyncio.Task] = {}

    def resize(self, pool_id: str, body: dict) -> None:
        pool = self.state.pool(pool_id)
        if pool.spec.get("enableAutoScale"):
            raise BatchError(409, "AutoScalingEnabled", "The pool has autoscale enabled; disable it to resize.",
                             PoolId=pool.id)
        _steady(pool)
        targets = []
        for name, current in (("targetDedicatedNodes", pool.target_dedicated),
                              ("targetLowPriorityNodes", pool.target_low_priority)):
            value = optional(body, name, int, current)
            if not 0 <= value <= MAX_NODES:
                raise invalid_property(name, value, f"must be between 0 and {MAX_NODES}")
            targets.append(value)
        self._start(pool, targets[0], targets[1], _dealloc(body))

    def retarget(self, pool: Pool, formula: str) -> None:
        """An autoscale evaluation: the formula's fixed targets become the pool's."""
        targets = parse_formula(formula)
        self._start(pool, targets["dedicated"], targets["low_priority"], targets["deallocation"])

    def _start(self, pool: Pool, dedicated: int, low: int, option: str, leaving: list[Node] | None = None) -> None:
        pool.target_dedicated, pool.target_low_priority = dedicated, low
        pool.resize_errors = []
        pool.set_allocation("resizing")
        self._running[pool.id] = self.state.spawn(self._apply(pool, option, leaving))

    async def _apply(self, pool: Pool, option: str, leaving: list[Node] | None) -> None:
        await asyncio.sleep(ALLOCATION_SECONDS)
        if leaving is None:
            leaving = []
            for dedicated, target in ((True, pool.target_dedicated), (False, pool.target_low_priority)):
                nodes = [n for n in pool.nodes.values() if n.dedicated == dedicated and n.state != "leavingpool"]
                if len(nodes) < target:
                    self.pools.add_nodes(pool, target - len(nodes), dedicated)
                # Idle nodes leave first, busy ones last.
                nodes.sort(key=lambda n: len(n.running))
                leaving += nodes[:max(len(nodes) - target, 0)]
        await asyncio.gather(*(self._leave(pool, node, option) for node in leaving))
        pool.set_allocation("steady")
        self._running.pop(pool.id, None)
        self.state.wake()

    async def _leave(self, pool: Pool, node: Node, option: str) -> None:
        if option in ("requeue", "terminate"):
            self.pools.evict_node(node, requeue=option == "requeue")
        node.set_state("leavingpool")  # takes no new tasks from here on
        while node.running:
            await asyncio.sleep(DRAIN_POLL_SECONDS)
        await self.pools.remove_node(pool, node)

    def stop_resize(self, pool_id: str) -> None:
        """Stop where the pool is: the targets become the current counts."""
        pool = self.state.pool(pool_id)
        running = self._running.pop(pool.id, None)
        if running is None or pool.allocation_state != "resizing":
            return
        pool.set_allocation("stopping")
        running.cancel()
        pool.target_dedicated, pool.target_low_priority = pool.counts()
        pool.set_allocation("steady")

    def remove_nodes(self, pool_id: str, body: dict) -> None:
        pool = self.state.pool(pool_id)
        ids = body.get("nodeList")
        if not isinstance(ids, list) or not 1 <= len(ids) <= 100:
            raise invalid_property("nodeList", ids, "expected a list of 1 to 100 node ids")
        _steady(pool)
        nodes = [lookup(pool.nodes, node_id, "Node") for node_id in ids]
        low = sum(1 for n in nodes if not n.dedicated)
        self._start(pool, pool.target_dedicated - (len(nodes) - low), pool.target_low_priority - low,
                    _dealloc(body), leaving=nodes)
