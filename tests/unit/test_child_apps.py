"""The child apps of tests/support/child_apps.py take SIGTERM their own way (a handler, or blocked
for sigwait) before they write their first line: a test signals them as soon as it sees it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.child_apps import ENV_REPORTER, HUP_READER, SIGNAL_RECORDER

# Runs an app (argv: SOURCE RESULT APP-ARGS...) with `open` watched: at the first append to the
# app's log (its argv[1]) it writes to RESULT whether SIGTERM is handled or blocked by then, and
# exits. The app's own first line is never written, so the answer does not depend on timing.
AT_FIRST_LINE = r"""
import builtins, os, signal, sys
source, result = sys.argv[1], sys.argv[2]
sys.argv = [source, *sys.argv[3:]]
real_open = builtins.open
def watched_open(file, mode="r", *args, **kwargs):
    if "a" in mode and str(file) == sys.argv[1]:
        handled = signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, None)
        blocked = signal.SIGTERM in signal.pthread_sigmask(signal.SIG_BLOCK, [])
        with real_open(result, "w") as f:
            f.write("handled" if handled else "blocked" if blocked else "default")
        os._exit(0)
    return real_open(file, mode, *args, **kwargs)
builtins.open = watched_open
with real_open(source) as f:
    code = compile(f.read(), source, "exec")
exec(code, {"__name__": "__main__"})
"""


def _sigterm_at_first_line(tmp_path: Path, source: str, *args: str) -> str:
    app = tmp_path / "app.py"
    app.write_text(source)
    result = tmp_path / "result"
    run = [sys.executable, "-c", AT_FIRST_LINE, str(app), str(result), *args]
    subprocess.run(run, check=True, timeout=30)
    return result.read_text()


@pytest.mark.parametrize("ignore_term", [(), ("ignore-term",)])
def test_the_signal_recorder_handles_sigterm_before_it_says_ready(
    tmp_path: Path, ignore_term: tuple[str, ...]
) -> None:
    log = str(tmp_path / "log")
    assert _sigterm_at_first_line(tmp_path, SIGNAL_RECORDER, log, *ignore_term) == "handled"


@pytest.mark.parametrize("ignore_term", [(), ("ignore-term",)])
def test_the_env_reporter_handles_sigterm_before_it_reports(
    tmp_path: Path, ignore_term: tuple[str, ...]
) -> None:
    log = str(tmp_path / "log")
    assert _sigterm_at_first_line(tmp_path, ENV_REPORTER, log, "HOME", *ignore_term) == "handled"


def test_the_hup_reader_blocks_sigterm_before_its_first_look(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("t")
    (tmp_path / "param").write_text("file value")
    (tmp_path / "served").write_text("http value")
    url = (tmp_path / "served").as_uri()  # urllib reads file: URLs, so no server is needed
    args = [str(tmp_path / "log"), str(tmp_path / "param"), url, str(tmp_path / "token")]
    assert _sigterm_at_first_line(tmp_path, HUP_READER, *args) == "blocked"
