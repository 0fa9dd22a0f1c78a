"""Small real programs for notify/exec tests, and the helpers that start and watch them.

The apps are Python scripts written into the test's tmp dir and run with this interpreter. Each
appends one line per event to a log file, so a test can wait on what the app saw. Each sets up
its signal handling before it writes its first line: a test may signal it as soon as it sees it.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

from tests.support.waiting import wait_until

# Appends "ready <pid>" at start and "<SIGNAME> <n>" for each signal it gets; exits 0 on SIGTERM
# unless told to ignore it. argv: LOG [ignore-term]
SIGNAL_RECORDER = r"""
import os, signal, sys, time
log, ignore_term = sys.argv[1], "ignore-term" in sys.argv[2:]
count = {}
def note(line):
    with open(log, "a") as f:
        f.write(line + "\n")
def on_signal(sig, frame):
    name = signal.Signals(sig).name
    count[name] = count.get(name, 0) + 1
    note(f"{name} {count[name]}")
    if sig == signal.SIGTERM and not ignore_term:
        sys.exit(int(os.environ.get("EXIT_ON_TERM", "0")))
for s in (signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2, signal.SIGINT, signal.SIGQUIT):
    signal.signal(s, on_signal)
signal.signal(signal.SIGTERM, on_signal)
note(f"ready {os.getpid()}")
while True:
    time.sleep(3600)
"""

# Appends "env <pid> <value of $ENV_NAME>" at start and "SIGTERM <pid>" on SIGTERM; exits 0 on
# SIGTERM unless told to ignore it. argv: LOG ENV_NAME [ignore-term]
ENV_REPORTER = r"""
import os, signal, sys, time
log, name, ignore_term = sys.argv[1], sys.argv[2], "ignore-term" in sys.argv[3:]
def on_term(sig, frame):
    with open(log, "a") as f:
        f.write(f"SIGTERM {os.getpid()}\n")
    if not ignore_term:
        sys.exit(0)
signal.signal(signal.SIGTERM, on_term)
with open(log, "a") as f:
    f.write(f"env {os.getpid()} {os.environ.get(name, '<unset>')}\n")
while True:
    time.sleep(3600)
"""


def write_app(tmp_path: Path, source: str, name: str = "app.py") -> Path:
    path = tmp_path / name
    path.write_text(source)
    return path


def read_lines(path: Path) -> list[str]:
    try:
        return path.read_text().splitlines()
    except FileNotFoundError:
        return []


def wait_for_line(path: Path, line: str, timeout: float = 15.0) -> list[str]:
    def lines_with_it() -> list[str]:
        lines = read_lines(path)
        return lines if line in lines else []

    return wait_until(lines_with_it, timeout, what=f"{line!r} in {path.name}")


def count_prefix(path: Path, prefix: str) -> int:
    return sum(1 for line in read_lines(path) if line.startswith(prefix))


def start_named_app(name: str, source: str, *args: str) -> subprocess.Popen[bytes]:
    """Run `source` with this interpreter under argv[0] = `name` (as `process = "name"` sees it)."""
    return subprocess.Popen([name, "-c", source, *args], executable=sys.executable)


def start_recorder(tmp_path: Path, *args: str) -> tuple[subprocess.Popen[bytes], Path]:
    """SIGNAL_RECORDER started and ready (its handlers in place); the process and its log."""
    log = tmp_path / "app.log"
    script = write_app(tmp_path, SIGNAL_RECORDER)
    proc = subprocess.Popen([sys.executable, str(script), str(log), *args])
    wait_for_line(log, f"ready {proc.pid}")
    return proc, log


def process_state(pid: int) -> str | None:
    """The state letter in /proc/PID/stat ("Z" for a zombie); None once the process is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return None


def stop_app(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait(10)


# On SIGHUP: reads its parameter file under files.dir and asks the HTTP API for the same name,
# and appends "<file value> <http value>". Signals are taken with sigwait, so one look at a time.
# argv: LOG FILE URL TOKEN_FILE
HUP_READER = r"""
import signal, sys, urllib.request
log, path, url, token_file = sys.argv[1:5]
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP, signal.SIGTERM})
token = open(token_file).read().strip()
def look():
    with open(path) as f:
        from_file = f.read()
    request = urllib.request.Request(url, headers={"X-Aws-Parameters-Secrets-Token": token})
    with urllib.request.urlopen(request, timeout=10) as reply:
        from_http = reply.read().decode()
    with open(log, "a") as f:
        f.write(f"{from_file} {from_http}\n")
look()
while True:
    if signal.sigwait({signal.SIGHUP, signal.SIGTERM}) == signal.SIGTERM:
        sys.exit(0)
    look()
"""


def http_get(url: str, token: str | None = None) -> tuple[int, str]:
    """(status, body) of a GET to the agent; errors are answers here, not exceptions."""
    headers = {"X-Aws-Parameters-Secrets-Token": token} if token is not None else {}
    request = urllib.request.Request(url, headers=headers)  # noqa: S310 (loopback http)
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:  # noqa: S310
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
