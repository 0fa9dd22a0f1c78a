"""The sd_notify output against a real unix datagram socket standing in for systemd."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.outputs.notify.systemd import (
    NotifySocket,
    SystemdNotifier,
    describe,
    notify_address,
    systemd_notifier_from_env,
    watchdog_period,
)
from agent.results import ParameterError
from agent.snapshot import Change
from agent.state import AgentState
from tests.support.builders import values_snapshot
from tests.support.systemd import FakeSystemd
from tests.support.waiting import async_wait_until

SECRET = "s3cr3t-value-never-sent"


@pytest.fixture
def abstract_name() -> str:
    return f"ssm-sidecar-test-{uuid.uuid4().hex}"


@pytest.fixture
def systemd(abstract_name: str) -> Iterator[FakeSystemd]:
    fake = FakeSystemd(b"\0" + abstract_name.encode())
    yield fake
    fake.close()


async def _ready_state(n: int) -> AgentState:
    state = AgentState()
    await state.swap(values_snapshot({f"p{i}": SECRET for i in range(n)}))
    state.record_success()
    state.ready = True
    return state


def test_notify_address_forms() -> None:
    assert notify_address("/run/systemd/notify") == "/run/systemd/notify"
    assert notify_address("@abstract/name") == b"\0abstract/name"
    for bad in ("relative/path", "@", "vsock:2:1234"):
        with pytest.raises(ValueError, match="NOTIFY_SOCKET"):
            notify_address(bad)


def test_no_notifier_without_notify_socket() -> None:
    assert systemd_notifier_from_env(AgentState(), 30.0, {}) is None
    assert systemd_notifier_from_env(AgentState(), 30.0, {"NOTIFY_SOCKET": ""}) is None
    assert systemd_notifier_from_env(AgentState(), 30.0, {"NOTIFY_SOCKET": "x"}) is None
    notifier = systemd_notifier_from_env(AgentState(), 30.0, {"NOTIFY_SOCKET": "@x"})
    assert notifier is not None
    assert notifier.watchdog_period is None


def test_watchdog_period_is_half_of_watchdog_usec_for_this_process() -> None:
    assert watchdog_period({"WATCHDOG_USEC": "30000000"}) == 15.0
    assert watchdog_period({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}) == 15.0
    assert watchdog_period({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}) is None
    assert watchdog_period({"WATCHDOG_USEC": "0"}) is None
    assert watchdog_period({"WATCHDOG_USEC": "soon"}) is None
    assert watchdog_period({}) is None


async def test_ready_only_on_first_complete_load_then_status_and_stopping(
    systemd: FakeSystemd, abstract_name: str
) -> None:
    state = AgentState()
    notifier = systemd_notifier_from_env(state, 0.05, {"NOTIFY_SOCKET": "@" + abstract_name})
    assert notifier is not None
    await notifier.start()
    try:
        await async_wait_until(lambda: systemd.find("STATUS"), 5, what="first STATUS")
        assert systemd.messages[0] == {"STATUS": "starting: loading parameters"}

        # An incomplete cycle: status says why, and no READY=1.
        state.record_failure("required parameters missing: /app/db/password")
        waiting = "waiting for the first complete load: required parameters missing: "
        await async_wait_until(
            lambda: any(m.get("STATUS", "").startswith(waiting) for m in systemd.drain()), 5
        )
        # A change published before readiness (not first) is a status update only.
        await notifier.publish(values_snapshot({"p0": SECRET}), Change(), first=False)
        assert systemd.find("READY") == []

        await state.swap(values_snapshot({"p0": SECRET, "p1": SECRET}))
        state.record_success()
        state.ready = True
        await notifier.publish(state.snapshot, Change(), first=True)
        ready = await async_wait_until(lambda: systemd.find("READY"), 5)
        assert ready[0]["READY"] == "1"
        assert ready[0]["STATUS"].startswith("serving 2 parameters; last refresh 20")

        # A second first=True (say, after a config reload) does not repeat READY=1.
        await notifier.publish(state.snapshot, Change(), first=True)
        await state.swap(values_snapshot({"p0": SECRET, "p1": SECRET, "p2": SECRET}))
        await async_wait_until(
            lambda: any(m.get("STATUS", "").startswith("serving 3 ") for m in systemd.drain()), 5
        )
        assert len(systemd.find("READY")) == 1
    finally:
        await notifier.stop()
    stopping = await async_wait_until(lambda: systemd.find("STOPPING"), 5)
    assert stopping[-1] == {"STOPPING": "1", "STATUS": "stopping"}
    assert all(SECRET not in str(m) for m in systemd.drain())


async def test_path_socket_and_watchdog_keepalives(tmp_path: Path) -> None:
    path = tmp_path / "notify"
    if len(str(path)) > 100:  # sun_path holds 108 bytes
        pytest.skip("tmp_path too long for a unix socket path")
    systemd = FakeSystemd(str(path))
    state = await _ready_state(1)
    env = {"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "100000"}
    notifier = systemd_notifier_from_env(state, 30.0, env)
    assert notifier is not None
    assert notifier.watchdog_period == 0.05
    await notifier.start()
    try:
        await async_wait_until(lambda: len(systemd.find("WATCHDOG")) >= 3, 5)
    finally:
        await notifier.stop()
        systemd.close()


async def test_status_while_refresh_fails_keeps_serving_wording() -> None:
    state = await _ready_state(4)
    state.record_failure("ssm: ThrottlingException: Rate exceeded")
    state.record_failure("ssm: ThrottlingException: Rate exceeded")
    text = describe(state)
    assert text.startswith("serving 4 parameters (last known good since 20")
    assert "refresh failing (2 in a row): ssm: ThrottlingException: Rate exceeded" in text


async def test_status_counts_failing_parameters_and_stays_one_short_line() -> None:
    state = await _ready_state(1)
    state.parameter_errors = (ParameterError("/app/key", "AccessDeniedException", "kms denied"),)
    assert describe(state).startswith("serving 1 parameter; last refresh ")
    assert describe(state).endswith("; 1 failing (last good value kept)")
    state.ready = False
    state.record_failure("line one\nline two " + "x" * 1000)
    text = describe(state)
    assert "\n" not in text
    assert len(text) == 400
    assert text.endswith("...")


async def test_a_missing_socket_never_breaks_the_agent(tmp_path: Path) -> None:
    sock = NotifySocket(str(tmp_path / "gone"))
    notifier = SystemdNotifier(sock, await _ready_state(1), 30.0)
    await notifier.start()
    try:
        await notifier.publish(values_snapshot({"p0": SECRET}), Change(), first=True)
        await notifier.publish(values_snapshot({"p0": SECRET}), Change(), first=False)
        assert sock.send("STATUS=x") is False
        # READY=1 was not delivered, so a later first load tries again once the socket exists.
        systemd = FakeSystemd(str(tmp_path / "gone"))
        try:
            await notifier.publish(values_snapshot({"p0": SECRET}), Change(), first=True)
            assert systemd.find("READY") == [{"READY": "1", "STATUS": describe(notifier.state)}]
        finally:
            systemd.close()
    finally:
        await notifier.stop()


async def test_silent_unless_started_as_in_once_mode(
    systemd: FakeSystemd, abstract_name: str
) -> None:
    notifier = systemd_notifier_from_env(
        await _ready_state(2), 30.0, {"NOTIFY_SOCKET": "@" + abstract_name}
    )
    assert notifier is not None
    await notifier.publish(values_snapshot({"p0": SECRET, "p1": SECRET}), Change(), first=True)
    await notifier.stop()
    # Prove the socket works, then that nothing else arrived before this message.
    notifier.sock.send("STATUS=probe")
    probe = await async_wait_until(lambda: systemd.find("STATUS"), 5)
    assert probe == [{"STATUS": "probe"}]
