"""The operations routes: /healthz reports the agent's state and never a value."""

from __future__ import annotations

from agent.results import ParameterError
from tests.support.http_server import CIPHER, RFC3339_MS, SECRET, STANDARD, Api


async def test_healthz_reports_state_without_values(api: Api) -> None:
    api.state.record_success()
    api.state.parameter_errors = (
        ParameterError("/app/denied", "AccessDeniedException", f"denied {SECRET}"),
    )
    reply = await api.client.get("/healthz", token=None)
    body = reply.json()
    assert reply.status == 200
    assert body["ready"] is True
    assert body["parameters"] == len(STANDARD)
    assert RFC3339_MS.match(body["last_success"])
    assert 0 <= body["seconds_since_success"] < 5
    assert body["consecutive_failures"] == 0 and body["last_error"] is None
    assert body["errors"] == [{"name": "/app/denied", "code": "AccessDeniedException"}]
    assert SECRET not in reply.text and CIPHER not in reply.text
