"""`buildit validate` and `buildit run`: pipelines checked and run on this machine, no server.

The one deliberate place where the controller package runs agent code (executors, workspace):
the same planner and executors as the fleet, wired here.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from controller.cli.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, UsageError


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
    from controller.definition.validate import validate

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
    from controller.definition.model import PipelineInvalid
    from controller.definition.plan import GitContext, RunContext, plan
    from controller.definition.validate import load
    from controller.git.local import find_repo_root, head_commit, tracked_files
    from controller.localrun.console import ConsoleReporter
    from controller.localrun.execute import LocalRun, StageOutcome

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
