"""What the app asks of each output. Outputs read snapshots; they never reach back into a source."""

from __future__ import annotations

from typing import Protocol

from agent.snapshot import Change, Snapshot


class NotDelivered(Exception):
    """A serving output could not put this snapshot in place (the files output: the set is not
    on disk). The output has already logged and counted why; the chain tells nobody of the
    snapshot and publishes it again until it is delivered."""


class Output(Protocol):
    async def start(self) -> None: ...

    async def publish(self, snapshot: Snapshot, change: Change, first: bool) -> None:
        """Called in the chain's order after each swap that changed something, and with
        first=True for the first complete load. A serving output that cannot deliver the
        snapshot raises NotDelivered; it is then given it again (with the same or a newer
        snapshot) until it is delivered."""
        ...

    async def stop(self) -> None: ...
