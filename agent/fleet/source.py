"""The source the refresher sees in fleet mode: SSM when this agent must read it (watcher,
polling, alone, a safety cycle), the follower's held set otherwise (no call at all)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import structlog

from agent.snapshot import Parameter, Snapshot
from agent.sources.base import LoadResult
from agent.sources.ssm import SsmSource

if TYPE_CHECKING:
    from agent.fleet.fleet import Fleet

log = structlog.get_logger(__name__)


class FleetSource:
    def __init__(self, fleet: Fleet, ssm: SsmSource) -> None:
        self.fleet = fleet
        self.ssm = ssm

    async def load(self, previous: Snapshot) -> LoadResult:
        fleet = self.fleet
        await fleet.wait_joined()
        role = fleet.role
        if role == "follower" and not fleet.safety_due():
            return fleet.follower.result()
        result = await self.ssm.load(previous)
        fleet.follower.adopt(result)
        if role == "watcher":
            await fleet.publish(result)
        elif role == "follower":
            log.info("fleet_safety_cycle", calls=result.calls)
            fleet.safety_done()
        return result

    async def fetch(self, name: str) -> Parameter | None:
        return await self.ssm.fetch(name)

    async def close(self) -> None:
        try:
            await self.fleet.close()
        finally:
            await self.ssm.close()
