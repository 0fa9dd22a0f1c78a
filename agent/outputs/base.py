"""What the app asks of each output. Outputs read snapshots; they never reach back into a source."""

from __future__ import annotations

from typing import Protocol

from agent.snapshot import Change, Snapshot


class Output(Protocol):
    async def start(self) -> None: ...

    async def publish(self, snapshot: Snapshot, change: Change, first: bool) -> None:
        """Called in order (files, then notify) after each swap that changed something,
        and once with first=True after the first complete load."""
        ...

    async def stop(self) -> None: ...
