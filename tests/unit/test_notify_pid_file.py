"""notify.pid_file is read as a regular file only, a bounded amount, off the event loop: a FIFO,
a device or a directory planted there never stalls the agent, and is reported as such."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from agent.outputs.notify.signals import PidFileTarget
from tests.support.builders import values_snapshot


async def test_a_fifo_as_pid_file_never_blocks_the_event_loop(tmp_path: Path) -> None:
    fifo = tmp_path / "app.pid"
    os.mkfifo(fifo)
    loop_ran = threading.Event()
    rescued = threading.Event()

    def rescue() -> None:
        # If the agent is stuck opening the FIFO, open its other end so that the test can end
        # (and fail) instead of hanging.
        if not loop_ran.wait(5):
            rescued.set()
            os.close(os.open(fifo, os.O_WRONLY))

    threading.Thread(target=rescue, daemon=True).start()

    async def tick() -> None:
        await asyncio.sleep(0.05)
        loop_ran.set()

    ticker = asyncio.create_task(tick())
    delivery = await asyncio.wait_for(
        PidFileTarget(fifo).notify(signal.SIGHUP, values_snapshot({"key": "v"})), 10
    )
    await ticker
    assert not rescued.is_set(), "the event loop was blocked while the FIFO was opened"
    assert delivery.outcome == "target_missing"
    assert delivery.reason == "pid_file is not a regular file"


async def test_a_device_or_a_directory_is_not_a_pid_file(tmp_path: Path) -> None:
    for path in (Path("/dev/null"), tmp_path):
        delivery = await PidFileTarget(path).notify(signal.SIGHUP, values_snapshot({"key": "v"}))
        assert delivery.outcome == "target_missing", path
        assert delivery.reason == "pid_file is not a regular file", path


async def test_a_symlink_to_a_regular_pid_file_is_followed(tmp_path: Path) -> None:
    app = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        real = tmp_path / "real.pid"
        real.write_text(f"{app.pid}\n")
        link = tmp_path / "app.pid"
        link.symlink_to(real)
        delivery = await PidFileTarget(link).notify(signal.SIGTERM, values_snapshot({"key": "v"}))
        assert delivery.outcome == "sent" and delivery.pids == (app.pid,)
        assert app.wait(10) == -signal.SIGTERM
    finally:
        if app.poll() is None:
            app.kill()
            app.wait(10)


async def test_only_the_start_of_a_large_pid_file_is_read(tmp_path: Path) -> None:
    pid_file = tmp_path / "app.pid"
    pid_file.write_text("1" * (8 << 20))  # 8 MiB of digits: never a pid, never read whole
    pid, reason = PidFileTarget(pid_file).find()
    assert pid is None and reason == "pid_file does not hold a process id"
