"""Exec mode (`ssm-sidecar run -- CMD ARGS`): the app runs as the agent's child.

The Supervisor is an Output placed after the files output: the first complete load
(`publish(first=True)`) starts the child, so it finds its files written and the API ready. Later
changes reach it through the notify output (it is that output's target), per `exec.on_change`:
`signal` sends `notify.signal`; `restart` stops the child (SIGTERM, SIGKILL after
`exec.stop_timeout`) and starts a new one; `none` does nothing. With `exec.env = true` the values
are also in the child's environment (names from agent.keys.env_name; they override inherited ones).
The child inherits the agent's environment without the agent's AWS credentials (AWS_CREDENTIAL_ENV)
unless `exec.pass_aws_credentials = true`: see docs/security.md.

Signals sent to the agent (SIGTERM, SIGINT, SIGQUIT, SIGUSR1, SIGUSR2) are forwarded by `forward`;
after a forwarded SIGTERM, SIGINT or SIGQUIT the child has `exec.stop_timeout` to exit, then
SIGKILL.
When the child exits on its own, `wait()` returns its exit code (128+N when killed by signal N) and
the agent stops with it. A terminating signal that arrives before the child has started ends the
agent with 128+N, as if a child had been killed by it.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Sequence

import structlog

import agent.tasks as tasks
from agent.children import Child, exit_code
from agent.config import ExecConfig
from agent.keys import env_names
from agent.metrics import Metrics
from agent.outputs.notify import Delivery
from agent.snapshot import Change, Snapshot

log = structlog.get_logger(__name__)

FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)
TERMINATING = frozenset({signal.SIGTERM, signal.SIGINT, signal.SIGQUIT})
# Shell conventions for a command that cannot be run.
EXIT_NOT_EXECUTABLE, EXIT_NOT_FOUND, EXIT_ENV_ERROR = 126, 127, 1


class EnvError(Exception):
    """The values cannot become environment variables (two keys map to one name)."""


# The agent's own AWS identity: the keys themselves, and the variables that lead an SDK to a
# role (IRSA's web identity, ECS and EKS Pod Identity container credentials). The agent's role
# can read every configured parameter; the app, by default, gets none of it.
AWS_CREDENTIAL_ENV = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_ACCESS_KEY",
    "AWS_SECRET_KEY",
    "AWS_CREDENTIAL_EXPIRATION",
    "AWS_ROLE_ARN",
    "AWS_ROLE_SESSION_NAME",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
)


def child_environment(
    snapshot: Snapshot | None,
    base: dict[str, str] | None = None,
    *,
    pass_aws_credentials: bool = False,
) -> dict[str, str]:
    """The agent's environment without its AWS credentials (unless passed on), plus one variable
    per parameter (and secret) key when `snapshot` is given (those override); never logged."""
    env = dict(os.environ if base is None else base)
    if not pass_aws_credentials:
        for name in AWS_CREDENTIAL_ENV:
            env.pop(name, None)
    if snapshot is None:
        return env
    by_key = snapshot.values_by_key()
    try:
        names = env_names(sorted(by_key))
    except ValueError as exc:
        raise EnvError(str(exc)) from None
    env.update({name: by_key[key] for name, key in names.items()})
    return env


class Supervisor:
    def __init__(self, argv: Sequence[str], cfg: ExecConfig, metrics: Metrics) -> None:
        if not argv:
            raise ValueError("exec mode needs a command")
        self.argv = tuple(argv)
        self.cfg = cfg
        self.metrics = metrics
        self.child: Child | None = None
        self._launched = False
        self._restarting = False
        self._exit: asyncio.Future[int] | None = None
        self._watchers: set[asyncio.Task[None]] = set()
        self._kill_timers: set[int] = set()

    # --- Output --------------------------------------------------------------------------------

    async def start(self) -> None:
        self._exit_future()

    async def publish(self, snapshot: Snapshot, change: Change, first: bool) -> None:
        if first and not self._launched and not self._exit_future().done():
            self._launched = True
            try:
                env = self._environment(snapshot)
            except EnvError as exc:
                log.error("child_env_invalid", reason=str(exc))
                self._finish(EXIT_ENV_ERROR)
                return
            self._launch(env)

    async def stop(self) -> None:
        child = self.child
        if child is not None and child.running:
            returncode, killed = await child.stop(self.cfg.stop_timeout)
            self._log_stopped(child, returncode, killed)
        self._finish(exit_code(child.returncode) if child and child.returncode is not None else 0)
        for task in list(self._watchers):
            await task

    # --- notify target ---------------------------------------------------------------------------

    def describe(self) -> str:
        return "exec child"

    async def notify(self, sig: signal.Signals, snapshot: Snapshot) -> Delivery:
        child = self.child
        pids = (child.pid,) if child is not None else ()
        if self.cfg.on_change == "none":
            return Delivery("none", sig.name, pids)
        if child is None or not child.running:
            return Delivery("target_missing", sig.name, pids, "the child is not running")
        if self.cfg.on_change == "signal":
            if child.send_signal(sig):
                return Delivery("sent", sig.name, pids)
            return Delivery("target_missing", sig.name, pids, "the child is not running")
        return await self.restart(snapshot)

    async def restart(self, snapshot: Snapshot) -> Delivery:
        old = self.child
        assert old is not None
        try:
            env = self._environment(snapshot)
        except EnvError as exc:
            # The running child keeps its (older, consistent) environment.
            return Delivery("failed", signal.SIGTERM.name, (old.pid,), str(exc))
        log.info("child_restarting", pid=old.pid)
        self._restarting = True
        try:
            returncode, killed = await old.stop(self.cfg.stop_timeout)
        finally:
            self._restarting = False
        self._log_stopped(old, returncode, killed)
        if self._exit_future().done():  # the agent is stopping: no new child
            return Delivery("restart", signal.SIGTERM.name, (old.pid,))
        self._launch(env)
        return Delivery("restart", signal.SIGTERM.name, (old.pid,))

    # --- signals and exit ------------------------------------------------------------------------

    def forward(self, sig: signal.Signals) -> None:
        """A signal the agent received: pass it on to the child."""
        child = self.child
        if child is not None and child.send_signal(sig):
            log.info("signal_forwarded", signal=sig.name, pid=child.pid)
            if sig in TERMINATING:
                if self._restarting:
                    self._finish(128 + sig)  # no new child after this restart
                self._kill_after_stop_timeout(child)
            return
        if sig in TERMINATING:
            log.info("stopping_before_child", signal=sig.name)
            self._finish(128 + sig)
        else:
            log.info("signal_not_forwarded", signal=sig.name, reason="no child running")

    def exit_code(self) -> int:
        """The code decided so far (0 when nothing decided one)."""
        future = self._exit
        return future.result() if future is not None and future.done() else 0

    async def wait(self) -> int:
        """The exit code the agent should exit with."""
        return await asyncio.shield(self._exit_future())

    def _exit_future(self) -> asyncio.Future[int]:
        if self._exit is None:
            self._exit = asyncio.get_running_loop().create_future()
        return self._exit

    def _finish(self, code: int) -> None:
        future = self._exit_future()
        if not future.done():
            future.set_result(code)

    def _environment(self, snapshot: Snapshot) -> dict[str, str]:
        return child_environment(
            snapshot if self.cfg.env else None,
            pass_aws_credentials=self.cfg.pass_aws_credentials,
        )

    def _launch(self, env: dict[str, str]) -> None:
        try:
            child = Child.spawn(self.argv, env=env)
        except OSError as exc:
            code = EXIT_NOT_FOUND if isinstance(exc, FileNotFoundError) else EXIT_NOT_EXECUTABLE
            log.error("child_start_failed", command=self.argv[0], error=exc.strerror or repr(exc))
            self._finish(code)
            return
        self.child = child
        log.info(
            "child_started",
            pid=child.pid,
            command=self.argv[0],
            env_values=self.cfg.env,
            aws_credentials=self.cfg.pass_aws_credentials,
        )
        task = tasks.spawn(self._watch(child), f"child-{child.pid}", may_end=True)
        self._watchers.add(task)
        task.add_done_callback(self._watchers.discard)

    async def _watch(self, child: Child) -> None:
        returncode = await child.wait()
        if child is self.child and not self._restarting:
            code = exit_code(returncode)
            log.info("child_exited", pid=child.pid, exit_code=code)
            self._finish(code)

    def _kill_after_stop_timeout(self, child: Child) -> None:
        if child.pid in self._kill_timers:
            return
        self._kill_timers.add(child.pid)

        async def kill_later() -> None:
            try:
                await asyncio.wait_for(child.wait(), self.cfg.stop_timeout)
            except TimeoutError:
                if child.send_signal(signal.SIGKILL):
                    log.warning("child_killed", pid=child.pid, stop_timeout=self.cfg.stop_timeout)

        task = tasks.spawn(kill_later(), f"kill-{child.pid}", may_end=True)
        self._watchers.add(task)
        task.add_done_callback(self._watchers.discard)

    def _log_stopped(self, child: Child, returncode: int, killed: bool) -> None:
        if killed:
            log.warning("child_killed", pid=child.pid, stop_timeout=self.cfg.stop_timeout)
        else:
            log.info("child_stopped", pid=child.pid, exit_code=exit_code(returncode))
