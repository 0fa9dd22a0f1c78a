"""The `ssm-sidecar` command: a thin layer over Config and Agent."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any

from agent import __version__

if TYPE_CHECKING:
    from agent.app import Agent
    from agent.config import Config

# Imports are made by the commands that need them: `--version`, `check` and `get` start without
# the agent's runtime (aiohttp's server, aiobotocore, jinja2), which `run` and `once` import.

EXIT_OK, EXIT_RUNTIME, EXIT_USAGE = 0, 1, 2
PR_SET_DUMPABLE = 4  # <linux/prctl.h>


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ssm-sidecar",
        description="Serve AWS SSM Parameter Store values beside an application.",
    )
    p.add_argument("--version", action="version", version=f"ssm-sidecar {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    config_help = "config file (default: $SSM_SIDECAR_CONFIG, else /etc/ssm-sidecar/config.toml)"

    run = sub.add_parser("run", help="run the agent; with -- CMD it supervises CMD")
    run.add_argument("-c", "--config", help=config_help)
    run.add_argument("cmd", nargs=argparse.REMAINDER, help="-- CMD [ARGS...] (exec mode)")

    once = sub.add_parser("once", help="load once, write files, exit")
    once.add_argument("-c", "--config", help=config_help)

    check = sub.add_parser("check", help="validate the config and print the effective config")
    check.add_argument("-c", "--config", help=config_help)

    get = sub.add_parser("get", help="print one value from a running agent")
    get.add_argument("name")
    get.add_argument(
        "--secret", action="store_true", help="NAME is a Secrets Manager secret (name or ARN)"
    )
    get.add_argument("--url", help="agent URL (default: from the config's http.listen)")
    get.add_argument("--token-file", help="token file (default: from the config's http.token_file)")
    get.add_argument("-c", "--config", help=config_help)
    return p


def not_dumpable() -> str | None:
    """Make this process non-dumpable (Linux); None on success, else why not.

    The agent holds every value in memory: with the flag off, a crash writes no core dump, and
    no other process of the same uid may ptrace it or read /proc/<pid>/mem or environ (root
    still can). Children get the flag back when they exec, so the app is unaffected.
    """
    if not sys.platform.startswith("linux"):
        return "not Linux"
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
            return os.strerror(ctypes.get_errno())
    except (OSError, AttributeError) as exc:
        return str(exc)
    return None


def _load(path: str | None) -> Config:
    from agent.config import load_given_config

    return load_given_config(path)


def _run_loop(main: Callable[[], Coroutine[Any, Any, int]]) -> int:
    import asyncio

    try:
        import uvloop  # optional: Linux only
    except ImportError:
        return asyncio.run(main())
    return uvloop.run(main())


async def _serve(agent: Agent) -> int:
    import asyncio
    import signal

    from agent.supervisor import FORWARDED

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    if agent.supervisor is not None:
        # Exec mode: the child decides when to stop; the agent follows it out.
        for sig in FORWARDED:
            loop.add_signal_handler(sig, agent.supervisor.forward, sig)
    else:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, agent.reload)  # never forwarded
    return await agent.run(stop)


def _fail(exc: Exception) -> int:
    """An error nobody foresaw: one line on stderr (and one log line with its place)."""
    import structlog

    from agent.tasks import describe, where

    structlog.get_logger(__name__).error("agent_crashed", error=describe(exc), where=where(exc))
    print(f"ssm-sidecar: unexpected error: {describe(exc)}", file=sys.stderr)
    return EXIT_RUNTIME


def _stopped(exc: Exception, *, listens: bool = False) -> int:
    """The exit code of a command that `exc` stopped, with one line on stderr, never a traceback:
    an unusable token file or listen address (for a command that `listens`) or files.dir is 1,
    a config error 2, anything else 1."""
    from agent.config import ConfigError
    from agent.outputs.files import UnsafeDirectoryError

    if listens:
        from agent.outputs.http import ListenError

        if isinstance(exc, ListenError):
            print(f"ssm-sidecar: {exc}", file=sys.stderr)
            return EXIT_RUNTIME
    if isinstance(exc, UnsafeDirectoryError):
        print(f"ssm-sidecar: files.dir: {exc}", file=sys.stderr)
        return EXIT_RUNTIME
    if isinstance(exc, ConfigError):
        print(str(exc), file=sys.stderr)
        return EXIT_USAGE
    return _fail(exc)


def cmd_run(cfg: Config, cmd: list[str]) -> int:
    import structlog

    from agent.app import Agent
    from agent.outputs.http import raise_open_file_limit

    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    # Every connection is a descriptor: take all the kernel allows (the API caps its share).
    before, soft, hard = raise_open_file_limit()
    log = structlog.get_logger(__name__)
    (log.info if soft != before else log.debug)(
        "open_file_limit", soft_before=before, soft=soft, hard=hard
    )
    agent: Agent | None = None

    async def main() -> int:
        nonlocal agent
        agent = Agent(cfg, exec_argv=cmd)
        return await _serve(agent)

    try:
        code = _run_loop(main)
    except Exception as exc:
        return _stopped(exc, listens=True)
    if agent is not None and agent.failure is not None:
        print(f"ssm-sidecar: {agent.failure}", file=sys.stderr)
    return code


def cmd_once(cfg: Config) -> int:
    try:
        return _run_loop(lambda: _once(cfg))
    except Exception as exc:  # an init container gets one line, not a traceback
        return _stopped(exc)


async def _once(cfg: Config) -> int:
    from agent.app import Agent
    from agent.outputs.files import FilesOutput

    agent = Agent(cfg)
    result = await agent.once()
    # An init container must not start its app on a partial set: say what was not written.
    problems = [p for o in agent.outputs if isinstance(o, FilesOutput) for p in o.problems]
    for problem in problems:
        print(f"ssm-sidecar: files: {problem}", file=sys.stderr)
    if result.complete:
        return EXIT_RUNTIME if problems else EXIT_OK
    missing = sorted(e.subject for e in result.errors if e.required)
    detail = ", ".join(missing) if missing else (result.reason or "source unreachable")
    print(f"ssm-sidecar: load incomplete: {detail}", file=sys.stderr)
    return EXIT_RUNTIME


def cmd_check(cfg: Config) -> int:
    import json

    from agent.config import ConfigError
    from agent.sources.region import resolve_source_region

    problems: list[tuple[str, str]] = []
    try:
        cfg = resolve_source_region(cfg)  # shown resolved in the effective config
    except ConfigError as exc:
        problems.extend(exc.problems)
    # Templates are files of their own: a syntax error is a config error, found before running.
    templates = cfg.files.template if cfg.files else ()
    if templates:  # jinja2 only when there is a template
        from agent.outputs.files import TemplateError, TemplateRenderer
    for i, t in enumerate(templates):
        try:
            TemplateRenderer(t.source).compile()
        except TemplateError as exc:
            problems.append((f"files.template[{i}].source", str(exc)))
    if problems:
        print(ConfigError(str(cfg.origin), problems), file=sys.stderr)
        return EXIT_USAGE
    print(json.dumps(cfg.describe(), indent=2))
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # Before any value is read (`get` prints one, `run` and `once` hold them all).
    dump_problem = not_dumpable() if args.command != "check" else None
    if args.command == "get":  # needs no valid config when --url and --token-file are given
        from agent.get_command import run_get

        return run_get(args.name, args.url, args.token_file, args.config, secret=args.secret)
    from agent.config import ConfigError
    from agent.logs import setup_logging

    try:
        cfg = _load(args.config)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_USAGE
    setup_logging(cfg.log.level, cfg.log.format)
    if dump_problem is not None:
        import structlog

        structlog.get_logger(__name__).warning("core_dumps_not_disabled", reason=dump_problem)
    if args.command == "check":
        return cmd_check(cfg)
    from agent.lean import import_runtime

    import_runtime()  # `run` and `once` from here on: before anything imports aiohttp
    from agent.sources.region import resolve_source_region

    try:
        cfg = resolve_source_region(cfg)  # the SDKs' chain; none at all is a config error
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_USAGE
    if args.command == "once":
        return cmd_once(cfg)
    if args.command == "run":
        return cmd_run(cfg, list(args.cmd))
    print(f"ssm-sidecar: {args.command}: not available yet", file=sys.stderr)
    return EXIT_USAGE


def entrypoint() -> None:
    sys.exit(main())
