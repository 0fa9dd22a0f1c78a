"""`notify.command`: run after the signal, in its own process group, with a time limit."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Sequence

import structlog

from agent.children import Child, exit_code
from agent.metrics import Metrics

log = structlog.get_logger(__name__)

#: After `command_timeout`, the command's process group gets SIGTERM, then SIGKILL after this.
COMMAND_KILL_GRACE = 2.0


async def run_command(argv: Sequence[str], limit: float, metrics: Metrics) -> int | None:
    """Run the command for at most `limit` seconds; its exit code, or None when it could not
    start or ran out of time.
    Its output goes where the agent's goes; the agent logs only the exit code."""
    started = time.monotonic()
    try:
        child = Child.spawn(argv, new_session=True, inherit_stdin=False)
    except OSError as exc:
        metrics.notify_commands.labels(outcome="failed").inc()
        log.error("notify_command_failed", command=argv[0], error=exc.strerror or repr(exc))
        return None
    try:
        returncode = await asyncio.wait_for(child.wait(), limit)
    except TimeoutError:
        await child.stop(COMMAND_KILL_GRACE, group=True)
        metrics.notify_commands.labels(outcome="timeout").inc()
        log.error("notify_command_timeout", command=argv[0], timeout=limit, pid=child.pid)
        return None
    except asyncio.CancelledError:
        child.signal_group(signal.SIGKILL)
        raise
    code = exit_code(returncode)
    outcome = "ok" if code == 0 else "failed"
    metrics.notify_commands.labels(outcome=outcome).inc()
    level = log.info if code == 0 else log.error
    level(
        "notify_command_done",
        command=argv[0],
        exit_code=code,
        seconds=round(time.monotonic() - started, 3),
    )
    return code
