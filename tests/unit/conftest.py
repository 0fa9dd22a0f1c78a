"""Fixtures for the unit tests of the HTTP output."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support.http_server import Api, api_for


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    """A started HttpServer serving `STANDARD` from an in-memory state, and a client for it."""
    async with api_for(tmp_path) as running:
        yield running
