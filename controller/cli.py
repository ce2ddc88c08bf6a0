"""The `buildit` command, and the composition root: the only place that wires agent code in.

Subcommands: `validate` (check pipeline files) and `run` (run a pipeline here, no server).
Heavy imports (docker, dulwich, rich) happen inside the subcommand that needs them, so
`buildit validate` and `buildit run --executor local` start fast.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from controller import __version__

if TYPE_CHECKING:  # the server stack is imported only by the commands that run it
    from collections.abc import Awaitable, Callable

    from controller.server import Running
    from controller.settings import ControllerSettings

    AfterStart = Callable[[Running, asyncio.Event], Awaitable[None]]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class UsageError(Exception):
    """Bad command-line input: printed as `buildit: error: ...` with exit code 2."""


def _read(path: str) -> str:
    file = Path(path)
    if not file.exists():
        raise UsageError(f"{path}: no such file")
    if file.is_dir():
        candidate = file / ".buildit.kdl"
        if candidate.is_file():
            return candidate.read_text(encoding="utf-8")
        raise UsageError(f"{path}: is a directory without a .buildit.kdl")
    try:
        return file.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except OSError as exc:
        raise UsageError(f"{path}: {exc.strerror}") from exc


def cmd_validate(args: argparse.Namespace) -> int:
    """Validate each file; print every diagnostic (compiler style) to stderr."""
    from controller.pipeline.validate import validate

    failed = 0
    for path in args.files:
        source = _read(path)
        diagnostics = validate(source, path)
        if diagnostics:
            failed += 1
            for diagnostic in diagnostics:
                print(diagnostic.format(source), file=sys.stderr)
            count = len(diagnostics)
            print(f"{path}: {count} error{'s' if count != 1 else ''}", file=sys.stderr)
        elif not args.quiet:
            print(f"{path}: ok")
    return EXIT_FAILED if failed else EXIT_OK


def _parse_secrets(items: Sequence[str]) -> dict[str, str]:
    secrets: dict[str, str] = {}
    for item in items:
        name, eq, value = item.partition("=")
        if not name or not name.replace("_", "a").isalnum() or name[0].isdigit():
            raise UsageError(f"--secret {name or item!r}: expected NAME=VALUE or NAME (letters, digits, _)")
        if not eq:
            if name not in os.environ:
                raise UsageError(f"--secret {name}: no '=VALUE' given and no environment variable {name}")
            value = os.environ[name]
        secrets[name] = value
    return secrets


def cmd_run(args: argparse.Namespace) -> int:
    """Plan the pipeline in FILE and run it on this machine."""
    from agent.contract.types import StageSpec, StageStatus
    from agent.executors.base import Executor, ExecutorError
    from agent.executors.local import LocalExecutor
    from agent.workspace import copy_source
    from controller.git.local import find_repo_root, head_commit, tracked_files
    from controller.localrun.console import ConsoleReporter
    from controller.localrun.engine import LocalRun, StageOutcome
    from controller.pipeline.model import PipelineInvalid
    from controller.pipeline.plan import GitContext, RunContext, plan
    from controller.pipeline.validate import load

    secrets = _parse_secrets(args.secret)
    source_text = _read(args.file)
    file = Path(args.file).resolve()
    if file.is_dir():
        file = file / ".buildit.kdl"
    try:
        pipeline = load(source_text, args.file)
    except PipelineInvalid as exc:
        print(exc.report(), file=sys.stderr)
        return EXIT_FAILED

    commit = head_commit(file.parent)
    git = GitContext()
    if commit is not None:
        git = GitContext(commit.sha, commit.branch, commit.message, commit.author)
    if args.branch is not None:
        git = GitContext(git.sha, args.branch, git.message, git.author)
    try:
        compiled = plan(pipeline, RunContext(git=git), secrets)
    except PipelineInvalid as exc:
        print("\n".join(d.format(source_text) for d in exc.diagnostics), file=sys.stderr)
        return EXIT_FAILED

    local = LocalExecutor()
    docker: Executor | None = None
    wants_docker = args.executor != "local" and any(
        s.image for s in compiled.specs if s.name not in compiled.skipped
    )
    if wants_docker:
        from agent.executors.docker import DockerExecutor

        try:
            docker = DockerExecutor.connect(network_mode=args.network, pull_policy=args.pull)
        except ExecutorError as exc:
            print(f"buildit: error: {exc}", file=sys.stderr)
            if args.executor == "auto":
                print(
                    "buildit: hint: stages with an 'image' need Docker; pass --executor local "
                    "to run them as processes on this machine",
                    file=sys.stderr,
                )
            return EXIT_FAILED

    def executor_for(spec: StageSpec) -> Executor:
        return docker if (docker is not None and spec.image) else local

    root = find_repo_root(file.parent)
    files = tracked_files(root) if root is not None else None
    source_dir = root if root is not None else file.parent

    def fill(workspace: Path) -> None:
        copy_source(source_dir, files, workspace)

    git_note = (
        f"{git.branch or 'detached'} @ {git.short_sha}"
        if git.sha
        else "not a git repository: git.* are empty"
    )
    print(
        f"buildit: running pipeline '{pipeline.name}' ({len(compiled.specs)} stages; {git_note})", flush=True
    )
    run_dir = Path(tempfile.mkdtemp(prefix="buildit-run-"))
    reporter = ConsoleReporter(stage_names=[s.name for s in compiled.specs])
    runner = LocalRun(compiled, executor_for, fill, run_dir, reporter, jobs=args.jobs)
    interrupted = False

    async def main() -> list[StageOutcome]:
        nonlocal interrupted
        cancel = asyncio.Event()
        loop = asyncio.get_running_loop()

        def on_signal() -> None:
            nonlocal interrupted
            if not interrupted:
                interrupted = True
                print("\nbuildit: interrupted, cancelling running stages…", file=sys.stderr, flush=True)
            cancel.set()

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, on_signal)
        reporter.start()
        try:
            outcomes = await runner.run(cancel)
        finally:
            reporter.stop()
            if docker is not None:
                await docker.close()
        return list(outcomes.values())

    started = time.monotonic()
    try:
        outcomes = asyncio.run(main())
    finally:
        if args.keep_workspaces:
            print(f"buildit: workspaces kept in {run_dir}", file=sys.stderr)
        else:
            shutil.rmtree(run_dir, ignore_errors=True)
    reporter.summary(outcomes, time.monotonic() - started)
    if interrupted:
        return EXIT_INTERRUPTED
    fine = {StageStatus.SUCCEEDED}
    ok = all(
        o.status in fine or (o.status is StageStatus.SKIPPED and o.name in compiled.skipped) for o in outcomes
    )
    return EXIT_OK if ok else EXIT_FAILED


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
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from exc


async def _serve_until_signal(settings: ControllerSettings, after_start: AfterStart | None = None) -> None:
    """Run until SIGINT/SIGTERM, then stop cleanly."""
    from controller.server import start as start_controller

    running = await start_controller(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        if after_start is not None:
            await after_start(running, stop)
        await stop.wait()
    finally:
        await running.stop()


def _print_banner(settings: ControllerSettings, running: Running, extra: str = "") -> None:
    s, r = settings, running
    print(
        f"buildit {__version__} controller ready\n"
        f"  UI / API:            http://{s.http_host}:{r.http_port}/  (OpenAPI: /schema)\n"
        f"  agents (gRPC):       {s.grpc_host}:{r.grpc_port}\n"
        f"  registration token:  {s.registration_token}\n"
        f"  database:            {_redact(s.database_url)}\n"
        f"  join another agent:  buildit agent --controller HOST:{r.grpc_port} "
        f"--registration-token {s.registration_token}" + extra,
        flush=True,
    )


def _redact(url: str) -> str:
    from controller.db.engine import redact_url

    return redact_url(url)


def cmd_controller(args: argparse.Namespace) -> int:
    """Run the controller (HTTP + gRPC) until SIGINT/SIGTERM."""
    settings = _controller_settings(args)

    async def announce(running: Running, stop: asyncio.Event) -> None:
        _print_banner(settings, running)

    try:
        asyncio.run(_serve_until_signal(settings, announce))
    except OSError as exc:
        print(f"buildit: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except Exception as exc:
        if exc.__class__.__name__ == "DatabaseUnavailable":
            print(f"buildit: error: {exc}", file=sys.stderr)
            return EXIT_FAILED
        raise
    return EXIT_OK


def _add_controller_flags(parser: argparse.ArgumentParser) -> None:
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
    from controller.pipelines.services import (
        PipelineConflict,
        PipelineRejected,
        create_pipeline,
        list_pipelines,
    )

    settings = _controller_settings(args)
    files = _register_examples(args.pipelines)
    repos = _repos_to_watch(args.repo)
    executors = build_executors(args.executor, args.network)

    async def with_agent(running: Running, stop: asyncio.Event) -> None:
        svc = running.services
        registered = []
        for file in files:
            try:
                row = await create_pipeline(svc.org, svc.tenant, file.read_text(encoding="utf-8"), None)
                registered.append(row["name"])
            except PipelineConflict:
                pass
            except PipelineRejected as exc:
                print(f"buildit: skipped {file}: {len(exc.diagnostics)} problem(s)", file=sys.stderr)
        agent_settings = AgentSettings.from_sources(
            controller=f"127.0.0.1:{running.grpc_port}",
            registration_token=settings.registration_token,
            name=args.agent_name,
            capacity=str(args.capacity),
            executor=args.executor,
            state_dir=str(settings.data_dir / "agent"),
        )
        agent = Agent(agent_settings, executors)
        agent_task = asyncio.create_task(agent.run(), name="embedded-agent")
        extra = f"\n  embedded agent:      {agent_settings.name} ({', '.join(executors.advertised)})"
        if registered:
            extra += f"\n  pipelines added:     {', '.join(registered)}"
        for path in repos:
            extra += "\n  " + await _watch_local_repo(running, path)
        _print_banner(settings, running, extra)
        if args.trigger:
            rows = {r["name"]: r["id"] for r in await list_pipelines(svc.tenant)}
            for name in args.trigger:
                if name not in rows:
                    print(f"buildit: --trigger {name}: no such pipeline", file=sys.stderr)
                    continue
                run = await svc.scheduler.trigger(rows[name], branch="main", trigger="manual")
                print(
                    f"  triggered:           {name} run {run.number} -> "
                    f"http://{settings.http_host}:{running.http_port}/api/v1/pipelines/{rows[name]}/runs/{run.number}",
                    flush=True,
                )
        await stop.wait()
        agent.drain("the controller is stopping")
        try:
            await asyncio.wait_for(agent_task, 30)
        except (TimeoutError, Exception):
            agent_task.cancel()

    try:
        asyncio.run(_serve_until_signal(settings, with_agent))
    except OSError as exc:
        print(f"buildit: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        asyncio.run(executors.close())
    return EXIT_OK


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
    from controller.repos.services import RepoConflict, RepoSettings
    from controller.triggers.engine import RegistrationError

    engine = running.services.triggers
    assert engine is not None
    for repo in engine.repositories():
        if repo.kind == "local" and Path(repo.url) == path:
            return f"watching:            {path} (repository {repo.name})"
    try:
        repo = await engine.register(RepoSettings(url=str(path)))
    except RepoConflict:
        repo = await engine.register(
            RepoSettings(
                url=str(path), name=f"{path.name}-{hashlib.sha1(str(path).encode()).hexdigest()[:6]}"
            )
        )
    except RegistrationError as exc:
        return f"not watching:        {path}: {exc}"
    return f"watching:            {path} (repository {repo.name}; commit to run its .buildit.kdl)"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for the README's CLI reference test)."""
    parser = argparse.ArgumentParser(
        prog="buildit", description="BuildIt: Git-native CI/CD. Pipelines live in .buildit.kdl."
    )
    parser.add_argument("--version", action="version", version=f"buildit {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    validate = sub.add_parser("validate", help="check pipeline files; errors as FILE:LINE:COL: message")
    validate.add_argument("files", nargs="+", metavar="FILE", help="pipeline file(s) (.buildit.kdl)")
    validate.add_argument("-q", "--quiet", action="store_true", help="print nothing for valid files")
    validate.set_defaults(func=cmd_validate)

    run = sub.add_parser("run", help="run a pipeline on this machine, no server needed")
    run.add_argument("file", metavar="FILE", help="the pipeline file (or a directory holding .buildit.kdl)")
    run.add_argument(
        "--executor",
        choices=("auto", "local", "docker"),
        default="auto",
        help="auto: stages with an image run in Docker, others as processes; "
        "local: everything as processes; docker: like auto but Docker is required (default: auto)",
    )
    run.add_argument(
        "--secret",
        action="append",
        default=[],
        metavar="NAME[=VALUE]",
        help="a secret for ${secrets.NAME}; without =VALUE it is read from the environment variable NAME",
    )
    run.add_argument(
        "--jobs", "-j", type=_positive_int, default=4, help="stages run in parallel (default: 4)"
    )
    run.add_argument("--branch", help="override git.branch (also what 'when branch=' matches)")
    run.add_argument(
        "--network", default="bridge", help="Docker network mode for containers (default: bridge)"
    )
    run.add_argument(
        "--pull",
        choices=("missing", "always", "never"),
        default="missing",
        help="when to pull images (default: missing)",
    )
    run.add_argument("--keep-workspaces", action="store_true", help="keep stage workspaces for inspection")
    run.set_defaults(func=cmd_run)

    controller = sub.add_parser(
        "controller", help="run the controller: REST API, UI and the agents' gRPC endpoint"
    )
    _add_controller_flags(controller)
    controller.set_defaults(func=cmd_controller)

    agent = sub.add_parser(
        "agent", help="run an agent: registers with a controller and runs the stages it leases"
    )
    from agent.cli import add_arguments as add_agent_arguments

    add_agent_arguments(agent)
    agent.set_defaults(func=cmd_agent)

    up = sub.add_parser(
        "up", help="controller + one local agent in one process, on SQLite: BuildIt on a laptop"
    )
    _add_controller_flags(up)
    up.add_argument(
        "--pipelines",
        nargs="*",
        default=[],
        metavar="PATH",
        help="register these pipeline files (or every *.kdl in a directory) at start",
    )
    up.add_argument(
        "--trigger",
        action="append",
        default=[],
        metavar="NAME",
        help="trigger a run of this pipeline once started (repeatable)",
    )
    up.add_argument(
        "--executor",
        choices=("local", "docker", "auto"),
        default="auto",
        help="the embedded agent's executors (default auto: Docker when reachable, plus local)",
    )
    up.add_argument("--network", default="bridge", help="Docker network mode for stage containers")
    up.add_argument(
        "--capacity", type=_positive_int, default=4, help="stages the embedded agent runs at once"
    )
    up.add_argument("--agent-name", default="local", help="name of the embedded agent (default: local)")
    up.add_argument(
        "--repo",
        action="append",
        default=None,
        nargs="?",
        const=".",
        metavar="PATH",
        help="watch this local repository and run its .buildit.kdl on every commit (repeatable; "
        "without PATH: the current directory; default: the current directory when it holds .buildit.kdl)",
    )
    up.set_defaults(func=cmd_up)

    from controller.repo_cli import add_parsers as add_repo_parsers

    add_repo_parsers(sub)
    return parser


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `buildit` console script; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
    except UsageError as exc:
        print(f"buildit: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as exc:
        if exc.__class__.__name__ != "ApiError":  # controller.repo_cli's, imported only when used
            raise
        print(f"buildit: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    return code


if __name__ == "__main__":
    sys.exit(main())
