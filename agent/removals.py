"""A removal of much of the set at once waits for the next cycle to confirm it.

A listing that comes back short (a page lost, a permission briefly missing, a half-applied
Terraform change) looks exactly like parameters deleted. Removing is the one change an app
cannot survive a wrong guess about, so when one cycle would remove more than `max_share` of what
is served, nothing is removed: the parameters that are gone stay served and written, and are
removed only if the next cycle finds them gone too. Smaller removals go through at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from agent.snapshot import Parameter


@dataclass(frozen=True, slots=True)
class RemovalDecision:
    held: tuple[str, ...] = ()  # gone from this load, kept served until confirmed
    confirmed: tuple[str, ...] = ()  # held by the previous cycle, gone again: removed now


class RemovalGuard:
    def __init__(self) -> None:
        self._pending: frozenset[str] = frozenset()
        self._expected = False

    def expect_removals(self) -> None:
        """The configured set changed (a reload): the next cycle's removals are intended."""
        self._expected = True

    def check(
        self,
        served: Mapping[str, Parameter],
        loaded: Mapping[str, Parameter],
        max_share: float,
    ) -> RemovalDecision:
        absent = frozenset(name for name in served if name not in loaded)
        expected, self._expected = self._expected, False
        pending, self._pending = self._pending, frozenset()
        if not absent or expected or len(absent) <= max_share * len(served):
            return RemovalDecision()
        if absent <= pending:
            return RemovalDecision(confirmed=tuple(sorted(absent)))
        self._pending = absent
        return RemovalDecision(held=tuple(sorted(absent)))
