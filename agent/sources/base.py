"""What every source promises the refresher, and the results it hands back."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from agent.results import ParameterError
from agent.snapshot import Parameter, Secret, Snapshot


@dataclass(frozen=True)
class LoadResult:
    parameters: Mapping[str, Parameter]
    errors: tuple[ParameterError, ...] = ()
    calls: int = 0
    decryptions: int = 0
    extra: dict[str, int] = field(default_factory=dict)
    #: Secrets Manager secrets by Secret.ident (sources without secrets leave it empty).
    secrets: Mapping[str, Secret] = field(default_factory=dict)


class Source(Protocol):
    async def load(self, previous: Snapshot) -> LoadResult:
        """Everything configured; `previous` lets a source skip work for unchanged versions."""
        ...

    async def fetch(self, name: str) -> Parameter | None:
        """One name outside the configured set (on-demand); None when it does not exist."""
        ...

    async def close(self) -> None: ...
