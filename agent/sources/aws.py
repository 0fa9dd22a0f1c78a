"""What every AWS-backed source shares: one session (role_arn credentials set up once), clients
with the source's retry and timeout settings, and one way to sort an AWS error.

`AwsSession` is built once per source config and shared by the SSM and Secrets Manager sources,
so a cross-account role is assumed once (and refreshed by botocore before it expires) for both.
`AwsClient.call` turns throttling, 5xx and network failures into `SourceError` (the cycle
fails, the last good values stay) and the other client errors into `ApiError` (about the names
asked for); every call is counted in `source_requests_total{operation,outcome}`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from typing import Any

import aiohttp
import structlog
from aiobotocore.config import AioConfig
from aiobotocore.credentials import AioDeferredRefreshableCredentials
from aiobotocore.session import AioSession, get_session
from botocore.exceptions import BotoCoreError, ClientError

from agent.config import SourceConfig
from agent.metrics import Metrics
from agent.results import SourceError
from agent.sources.botocore_models import use_trimmed_models

log = structlog.get_logger(__name__)

THROTTLE_CODES = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "ThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
    }
)

_SERVER_CODES = frozenset({"InternalServerError", "InternalServiceError", "ServiceUnavailable"})


class ApiError(Exception):
    """A non-retryable answer about specific names (not found, access denied, KMS)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


#: A date an answer lacks: fixed, so that it never looks like a change.
UNKNOWN_TIME = datetime.fromtimestamp(0, UTC)


def as_datetime(v: Any) -> datetime:
    if isinstance(v, datetime):
        # In UTC: botocore gives each parsed date its own tzlocal() (~0.4 KiB per parameter held).
        return v.astimezone(UTC) if v.tzinfo else v.replace(tzinfo=UTC)
    if isinstance(v, int | float):
        return datetime.fromtimestamp(v, UTC)
    return UNKNOWN_TIME


def snake(operation: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in operation).lstrip("_")


class AwsSession:
    """The botocore session of one source config, with role_arn credentials when configured."""

    def __init__(self, cfg: SourceConfig, session: AioSession | None = None) -> None:
        self.cfg = cfg
        self.session = session or get_session()
        use_trimmed_models(self.session)  # only the operations the agent calls: ~10 MiB less
        self._lock = asyncio.Lock()
        self._prepared = False

    def botocore_config(self) -> AioConfig:
        return AioConfig(
            retries={"mode": "standard", "total_max_attempts": self.cfg.max_attempts},
            connect_timeout=self.cfg.timeout,
            read_timeout=self.cfg.timeout,
            max_pool_connections=10,
            user_agent_extra="ssm-sidecar",
        )

    async def prepare(self) -> AioSession:
        """The session, its role_arn credentials set up on first use (once for all clients)."""
        async with self._lock:
            if not self._prepared and self.cfg.role_arn:
                # aiobotocore takes refreshable credentials from the session, not the client.
                self.session._credentials = self._assume_role_credentials()
            self._prepared = True
        return self.session

    def _assume_role_credentials(self) -> AioDeferredRefreshableCredentials:
        role_arn = self.cfg.role_arn
        assert role_arn is not None
        # Its own session, made only with role_arn (a session costs ~0.3 MiB).
        base_session = get_session()
        use_trimmed_models(base_session)

        async def refresh() -> dict[str, Any]:
            kwargs: dict[str, Any] = {"RoleArn": role_arn, "RoleSessionName": "ssm-sidecar"}
            if self.cfg.external_id:
                kwargs["ExternalId"] = self.cfg.external_id
            # The base credential chain (env, profile, IRSA, IMDS) signs the AssumeRole call; it
            # must be another session than the one that holds the assumed credentials.
            async with base_session.create_client(
                "sts", region_name=self.cfg.region, endpoint_url=self.cfg.endpoint_url
            ) as sts:
                creds = (await sts.assume_role(**kwargs))["Credentials"]
            log.info("assumed_role", role_arn=role_arn, expires=str(creds["Expiration"]))
            return {
                "access_key": creds["AccessKeyId"],
                "secret_key": creds["SecretAccessKey"],
                "token": creds["SessionToken"],
                "expiry_time": as_datetime(creds["Expiration"]).isoformat(),
            }

        # Refreshed by botocore shortly before expiry, on the call that needs them.
        return AioDeferredRefreshableCredentials(refresh_using=refresh, method="sts-assume-role")


class AwsClient:
    """One service's client on an AwsSession, created on first use; `call` sorts the errors."""

    def __init__(self, service: str, aws: AwsSession, metrics: Metrics) -> None:
        self.service = service
        self.aws = aws
        self._metrics = metrics
        self._stack = AsyncExitStack()
        self._client: Any = None
        self._lock = asyncio.Lock()
        #: Awaited before each call (the agent's SSM call budget); None: no wait.
        self.before_call: Callable[[], Awaitable[None]] | None = None

    async def client(self) -> Any:
        async with self._lock:
            if self._client is None:
                session = await self.aws.prepare()
                self._client = await self._stack.enter_async_context(
                    session.create_client(
                        self.service,
                        region_name=self.aws.cfg.region,
                        endpoint_url=self.aws.cfg.endpoint_url,
                        config=self.aws.botocore_config(),
                    )
                )
            return self._client

    async def call(self, operation: str, **kwargs: Any) -> dict[str, Any]:
        if self.before_call is not None:
            await self.before_call()
        try:
            # Inside the try: building the client can fail too (credentials, a role to assume).
            client = await self.client()
            resp: dict[str, Any] = await getattr(client, snake(operation))(**kwargs)
        except ClientError as exc:
            err = exc.response.get("Error", {})
            code = str(err.get("Code", "Unknown"))
            message = str(err.get("Message", ""))
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
            if code in THROTTLE_CODES:
                self.count(operation, "throttled")
                self._metrics.source_throttled.inc()
                raise SourceError(f"{operation} throttled: {code}", throttled=True) from None
            if status >= 500 or code in _SERVER_CODES:
                self.count(operation, "server_error")
                raise SourceError(f"{operation} failed: {code} (HTTP {status})") from None
            self.count(operation, "client_error")
            raise ApiError(code, message) from None
        except (TimeoutError, BotoCoreError, aiohttp.ClientError, OSError) as exc:
            self.count(operation, "network_error")
            raise SourceError(f"{operation} failed: {type(exc).__name__}: {exc}") from None
        self.count(operation, "ok")
        return resp

    def count(self, operation: str, outcome: str) -> None:
        self._metrics.source_requests.labels(operation=operation, outcome=outcome).inc()

    async def close(self) -> None:
        await self._stack.aclose()
        self._client = None
