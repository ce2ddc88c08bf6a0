"""`buildit controller`, `buildit agent` and `buildit up`: the long-running processes.

Heavy imports (the server stack, the agent, docker) happen inside the command that runs them.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from controller import __version__
from controller.cli.errors import EXIT_FAILED, EXIT_OK, UsageError

if TYPE_CHECKING:  # the server stack is imported only by the commands that run it
    from collections.abc import Awaitable, Callable

    from controller.cli.stopping import StopSignals
    from controller.server import Running
    from controller.settings import ControllerSettings

    AfterStart = Callable[[Running, StopSignals], Awaitable[None]]


#: Exit status after Ctrl-C during the start (as a shell reports a process ended by SIGINT).
EXIT_INTERRUPTED = 130


def _controller_settings(args: argparse.Namespace) -> ControllerSettings:
    from controller.settings import ControllerSettings

    try:
        return ControllerSettings.from_env(
            data_dir=args.data_dir,
            database_url=args.database_url,
            http_host=args.host,
            grpc_host=args.host,
            http_port=args.http_port,
            grpc_port=args.grpc_port,
            registration_token=args.registration_token,
            grpc_tls_cert=args.grpc_tls_cert,
            grpc_tls_key=args.grpc_tls_key,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from exc


async def _serve_until_signal(settings: ControllerSettings, after_start: AfterStart | None = None) -> int:
    """Run until SIGINT/SIGTERM, then stop cleanly (a second signal: at once); the exit status."""
    from controller.cli import address
    from controller.cli.stopping import EXIT_STOPPED_NOW, StopSignals, stop_controller
    from controller.server import start as start_controller

    running = await start_controller(settings)
    recorded = address.record(settings.data_dir, settings.http_host, running.http_port, running.grpc_port)
    signals = StopSignals()
    try:
        if after_start is not None:
            await after_start(running, signals)
        await signals.first.wait()
    finally:
        address.forget(recorded)
        await stop_controller(running, signals)
        signals.close()
    return EXIT_STOPPED_NOW if signals.now.is_set() else EXIT_OK


def _print_banner(settings: ControllerSettings, running: Running, extra: str = "") -> None:
    s, r = settings, running
    tls = s.grpc_tls_cert is not None
    join = f"grpcs://HOST:{r.grpc_port} --ca-file CA.pem" if tls else f"HOST:{r.grpc_port}"
    box = r.deps.secret_box
    key_source = "BUILDIT_SECRET_KEY" if s.secret_key is not None else str(s.data_dir / "master.key")
    key_id = f" (key {box.key.key_id}: back it up with the database)" if box is not None else ""
    print(
        f"buildit {__version__} controller ready\n"
        f"  UI / API:            http://{s.http_host}:{r.http_port}/  (OpenAPI: /schema)\n"
        f"  agents (gRPC):       {s.grpc_host}:{r.grpc_port}{' (TLS)' if tls else ''}\n"
        f"  registration token:  {s.registration_token}\n"
        f"  database:            {_redact(s.database_url)}\n"
        f"  master key:          {key_source}{key_id}\n"
        f"  join another agent:  BUILDIT_REGISTRATION_TOKEN={s.registration_token} "
        f"buildit agent --controller {join}" + _sign_in_hint(r) + extra,
        flush=True,
    )


def _ui_url(settings: ControllerSettings, running: Running) -> str:
    """Where people open the UI: BUILDIT_PUBLIC_URL, else the address HTTP listens on."""
    return settings.public_url or f"http://{settings.http_host}:{running.http_port}"


def _sign_in_hint(running: Running) -> str:
    """How a newcomer signs in, while the generated first password is still in its file."""
    if not running.admin_password:
        return ""
    return (
        f"\n  sign in:             user admin, password {running.admin_password}"
        "  (kept in <data dir>/initial-admin-password)"
    )


def _redact(url: str) -> str:
    from controller.db.engine import redact_url

    return redact_url(url)


def _configure_logging(default: int) -> None:
    """The one log line format (agent.contract.logformat) at BUILDIT_LOG_LEVEL, else `default`."""
    from agent.contract.logformat import configure

    try:
        configure(default)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def cmd_controller(args: argparse.Namespace) -> int:
    """Run the controller (HTTP + gRPC) until SIGINT/SIGTERM."""
    _configure_logging(logging.INFO)
    settings = _controller_settings(args)

    from controller.cli.stopping import end_process

    async def announce(running: Running, signals: StopSignals) -> None:
        _print_banner(settings, running)

    try:
        code = asyncio.run(_serve_until_signal(settings, announce))
    except KeyboardInterrupt:  # Ctrl-C while it was starting, before the stop handlers were in place
        print("buildit: interrupted while starting", file=sys.stderr)
        code = EXIT_INTERRUPTED
    except Exception as exc:
        if _refused_start(exc):
            print(f"buildit: error: {exc}", file=sys.stderr)
            return EXIT_FAILED
        raise
    end_process(code)


#: Why a controller may refuse to start, each with a message that says what to do (no traceback).
_START_REFUSALS = ("DatabaseUnavailable", "MasterKeyError", "DataDirBusy")


def _refused_start(exc: Exception) -> bool:
    """A start refusal the user can act on (by class name: the server stack is imported lazily)."""
    return isinstance(exc, OSError) or exc.__class__.__name__ in _START_REFUSALS


def add_controller_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", help="state directory (env BUILDIT_DATA_DIR, default ./.buildit)")
    parser.add_argument(
        "--database-url",
        help="sqlite:///PATH or postgresql://USER:PASS@HOST:PORT/DB "
        "(env BUILDIT_DATABASE_URL, default SQLite under the data dir)",
    )
    parser.add_argument("--host", help="address to bind HTTP and gRPC to (default 127.0.0.1)")
    parser.add_argument("--http-port", type=int, help="HTTP port (env BUILDIT_HTTP_PORT, default 8080)")
    parser.add_argument(
        "--grpc-port", type=int, help="gRPC port for agents (env BUILDIT_GRPC_PORT, default 9090)"
    )
    parser.add_argument(
        "--registration-token",
        help="secret agents join with (env BUILDIT_REGISTRATION_TOKEN; "
        "default: generated once, kept in the data dir)",
    )
    parser.add_argument(
        "--grpc-tls-cert",
        metavar="PATH",
        help="serve gRPC over TLS with this PEM certificate chain; needs --grpc-tls-key "
        "(env BUILDIT_GRPC_TLS_CERT; default: plaintext gRPC)",
    )
    parser.add_argument(
        "--grpc-tls-key",
        metavar="PATH",
        help="the PEM private key of --grpc-tls-cert (env BUILDIT_GRPC_TLS_KEY)",
    )


def cmd_agent(args: argparse.Namespace) -> int:
    """Run one agent (see agent/cli.py)."""
    from agent.cli import run as run_agent

    return run_agent(args)


def _register_examples(paths: Sequence[str]) -> list[Path]:
    files: list[Path] = []
    for item in paths:
        path = Path(item)
        if path.is_dir():
            files.extend(sorted(path.glob("*.kdl")))
        elif path.is_file():
            files.append(path)
        else:
            raise UsageError(f"--pipelines {item}: no such file or directory")
    return files


def cmd_up(args: argparse.Namespace) -> int:
    """Controller + one local agent in one process, on SQLite under ./.buildit: the embedded default."""
    from agent.executors.registry import build_executors
    from agent.runner import Agent
    from agent.settings import AgentSettings
    from controller.cli import stopping
    from controller.cli.pipelines import sync_files
    from controller.errors import BuildItError
    from controller.runs.commands import TriggerInput

    _configure_logging(logging.WARNING)  # quiet: the banner is the last thing `make run` prints
    settings = _controller_settings(args)
    files = _register_examples(args.pipelines)
    repos = _repos_to_watch(args.repo)
    executors = build_executors(args.executor, args.network)

    async def with_agent(running: Running, signals: StopSignals) -> None:
        deps = running.deps
        registered = await sync_files(deps, files)  # new ones created, changed ones updated (said)
        tls = settings.grpc_tls_cert is not None
        agent_settings = AgentSettings.from_sources(
            controller=f"{'grpcs://' if tls else ''}127.0.0.1:{running.grpc_port}",
            # Over TLS the embedded agent trusts --ca-file, else the certificate itself (self-signed).
            ca_file=(args.ca_file or os.environ.get("BUILDIT_CA_FILE") or settings.grpc_tls_cert)
            if tls
            else None,
            registration_token=settings.registration_token,
            name=args.agent_name,
            capacity=str(args.capacity),
            executor=args.executor,
            state_dir=str(settings.data_dir / "agent"),
            # Beside the data dir, not in it: stages get paths in the work dir, and the data dir
            # holds the database, the registration token and keys.
            work_dir=str(embedded_work_dir(settings.data_dir)),
        )
        agent = Agent(agent_settings, executors)
        await stopping.cut_off_leftovers(deps.scheduler, stopping.stored_agent_id(agent_settings.state_dir))
        agent_task = asyncio.create_task(agent.run(), name="embedded-agent")
        extra = f"\n  embedded agent:      {agent_settings.name} ({', '.join(executors.advertised)})"
        if registered:
            extra += f"\n  pipelines added:     {', '.join(registered)}"
        for path in repos:
            extra += "\n  " + await _watch_local_repo(running, path)
        for name in args.trigger or ():
            # Once per commit: a restart with nothing changed starts no run, and links the last one.
            try:
                record, new = await deps.runs.trigger_once(TriggerInput(target=name, source="manual"))
            except BuildItError as exc:
                print(f"buildit: --trigger {name}: {exc.message}", file=sys.stderr)
                continue
            page = f"{_ui_url(settings, running)}/pipelines/{record.pipeline_id}/runs/{record.number}"
            label, state = ("triggered:", "started now") if new else ("last run:", record.status)
            extra += f"\n  {label:<21}{name} run {record.number} ({state}): {page}"
        _print_banner(settings, running, extra)  # last: the link to the run ends the output
        await stopping.stop_embedded_agent(agent, agent_task, deps.scheduler, signals, settings.stop_grace_s)

    try:
        code = asyncio.run(_serve_until_signal(settings, with_agent))
    except KeyboardInterrupt:  # Ctrl-C while it was starting, before the stop handlers were in place
        print("buildit: interrupted while starting", file=sys.stderr)
        code = EXIT_INTERRUPTED
    except Exception as exc:
        if not _refused_start(exc):
            raise
        print(f"buildit: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        asyncio.run(executors.close())
    stopping.end_process(code)


def embedded_work_dir(data_dir: Path) -> Path:
    """Workspaces and Git cache of `buildit up`'s agent: `<data dir>-work` (`.buildit-work`)."""
    absolute = data_dir.absolute()
    return absolute.with_name(f"{absolute.name}-work")


def _repos_to_watch(given: list[str] | None) -> list[Path]:
    """`--repo` paths; with no flag, the current directory when it holds a .buildit.kdl."""
    if given is None:
        return [Path.cwd()] if (Path.cwd() / ".buildit.kdl").is_file() else []
    paths = [Path(p).resolve() for p in given]
    for path in paths:
        if not path.is_dir():
            raise UsageError(f"--repo {path}: no such directory")
    return paths


async def _watch_local_repo(running: Running, path: Path) -> str:
    """Register `path` with the trigger engine (or find it registered); a banner line."""
    from controller.errors import AlreadyExists, Invalid
    from controller.repos.services import RepoSettings

    engine = running.deps.triggers
    assert engine is not None
    for repo in engine.repositories(engine.default_owner[1]):  # `--repo` registers in the default tenant
        if repo.kind == "local" and Path(repo.url) == path:
            return f"watching:            {path} (repository {repo.name})"
    try:
        repo = await engine.register(RepoSettings(url=str(path)))
    except AlreadyExists:
        repo = await engine.register(
            RepoSettings(
                url=str(path), name=f"{path.name}-{hashlib.sha1(str(path).encode()).hexdigest()[:6]}"
            )
        )
    except Invalid as exc:
        return f"not watching:        {path}: {exc}"
    return f"watching:            {path} (repository {repo.name}; commit to run its .buildit.kdl)"
