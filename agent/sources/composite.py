"""One cycle over both stores: the configured parameter source plus Secrets Manager.

Both load at once. The parameter source failing fails the cycle (the refresher serves the last
good set and backs off), as before. Secrets Manager failing as a whole (throttled, unreachable)
does not hold back the parameters: each configured secret gets an error and keeps its last good
value, and /healthz shows why.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import structlog

from agent.results import SourceError
from agent.snapshot import Parameter, Snapshot
from agent.sources.base import LoadResult, Source

if TYPE_CHECKING:  # the module is imported only with [[secrets]] (factory.py)
    from agent.sources.secrets import SecretsManagerSource

log = structlog.get_logger(__name__)


class CompositeSource:
    def __init__(self, parameters: Source, secrets: SecretsManagerSource) -> None:
        self.parameters = parameters
        self.secrets = secrets

    async def load(self, previous: Snapshot) -> LoadResult:
        params, secrets = await asyncio.gather(
            self.parameters.load(previous), self.secrets.load(previous), return_exceptions=True
        )
        if isinstance(params, BaseException):
            raise params
        if isinstance(secrets, SourceError):
            log.warning("secrets_unavailable", reason=str(secrets), throttled=secrets.throttled)
            errors = tuple(self.secrets.unavailable(str(secrets), previous))
            return LoadResult(
                params.parameters,
                params.errors + errors,
                params.calls,
                params.decryptions,
                params.extra,
            )
        if isinstance(secrets, BaseException):
            raise secrets
        return LoadResult(
            params.parameters,
            params.errors + secrets.errors,
            params.calls + secrets.calls,
            params.decryptions + secrets.decryptions,
            {**params.extra, **secrets.extra},
            secrets=secrets.secrets,
        )

    async def fetch(self, name: str) -> Parameter | None:
        return await self.parameters.fetch(name)

    async def close(self) -> None:
        try:
            await self.parameters.close()
        finally:
            await self.secrets.close()
