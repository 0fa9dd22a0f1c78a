"""What every source promises the refresher, and the results it hands back."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from agent.snapshot import Parameter, Snapshot


class SourceError(Exception):
    """The source as a whole could not be read this cycle (network, throttling, 5xx).

    The message never holds a parameter value.
    """

    def __init__(self, message: str, *, throttled: bool = False) -> None:
        super().__init__(message)
        self.throttled = throttled


@dataclass(frozen=True, slots=True)
class ParameterError:
    """One name (or one whole path) that failed while the others loaded.

    `subject` is what was asked for (a name with its selector, an ARN, a path); `name` is the
    name without a selector when the two differ.
    """

    subject: str
    code: str
    message: str
    required: bool = True
    is_path: bool = False
    name: str | None = None

    def covers(self, p: Parameter) -> bool:
        """Whether `p` is (one of) what failed, so that its last good value should stay."""
        if self.is_path:
            prefix = self.subject.rstrip("/") + "/"
            return prefix == "/" or p.name.startswith(prefix)
        base = self.name or self.subject
        return base in (p.name, p.arn)


@dataclass(frozen=True)
class LoadResult:
    parameters: Mapping[str, Parameter]
    errors: tuple[ParameterError, ...] = ()
    calls: int = 0
    decryptions: int = 0
    extra: dict[str, int] = field(default_factory=dict)


class Source(Protocol):
    async def load(self, previous: Snapshot) -> LoadResult:
        """Everything configured; `previous` lets a source skip work for unchanged versions."""
        ...

    async def fetch(self, name: str) -> Parameter | None:
        """One name outside the configured set (on-demand); None when it does not exist."""
        ...

    async def close(self) -> None: ...
