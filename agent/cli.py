"""`buildit agent`: the flags, and running one agent process until it is drained.

`controller.cli` (the `buildit` command) adds these flags to its `agent` subcommand and calls `run`;
`python -m agent.cli` does the same without the controller package, which is how the agent's own
tests start it and how a minimal agent image can run it.

Exit status: 0 after a clean drain (SIGTERM/SIGINT, or the controller's Drain), 2 for bad input (a
malformed flag or environment variable, a missing registration token, an unusable state file), 1 when
the agent cannot work (registration refused, token revoked, Docker required but absent, TLS that does
not match the controller's, stopped by a second signal). Every failure is reported as one line on
stderr, prefixed with `buildit agent:`.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, cast

from agent.contract.logformat import configure as configure_logging
from agent.settings import ENV, AgentSettings

if TYPE_CHECKING:  # the executors and the runner (grpc) are imported only when an agent actually runs
    from agent.executors.registry import Executors

__all__ = ["add_arguments", "main", "run"]

PROG = "buildit agent"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the agent's flags to `parser` (each falls back to its BUILDIT_* environment variable)."""
    parser.add_argument(
        "--controller",
        metavar="HOST:PORT",
        help=f"the controller's gRPC address; grpcs://HOST:PORT for TLS (env {ENV['controller']})",
    )
    parser.add_argument(
        "--ca-file",
        metavar="PATH",
        help=f"PEM CA certificate that signed the controller's TLS certificate, for a grpcs:// address "
        f"(env {ENV['ca_file']}; default: the system's CAs)",
    )
    parser.add_argument(
        "--registration-token",
        metavar="TOKEN",
        help=f"the controller's enrolment secret, needed to register once (env {ENV['registration_token']}; "
        "prefer the variable or --registration-token-file: a flag's value shows in `ps`)",
    )
    parser.add_argument(
        "--registration-token-file",
        metavar="PATH",
        help="read the registration token from this file (its first line), e.g. a mounted secret",
    )
    parser.add_argument(
        "--name", help=f"agent name, unique in the fleet (env {ENV['name']}; default: the host name)"
    )
    parser.add_argument(
        "--labels",
        metavar="K=V,...",
        help=f"labels stages can select on, e.g. arch=amd64,gpu=true (env {ENV['labels']})",
    )
    parser.add_argument(
        "--capacity",
        metavar="N",
        help=f"how many stages run at the same time (env {ENV['capacity']}; default 2)",
    )
    parser.add_argument(
        "--executor",
        choices=("local", "docker", "kubernetes", "auto"),
        help=f"local processes, Docker containers (plus local), pods on this agent's Kubernetes node, "
        f"or docker when an engine answers (env {ENV['executor']}; default auto)",
    )
    parser.add_argument(
        "--namespace",
        metavar="NS",
        help=f"kubernetes executor: the namespace of stage pods (env {ENV['namespace']}); the node "
        f"comes from env {ENV['node_name']}",
    )
    parser.add_argument(
        "--helper-image",
        metavar="IMAGE",
        help=f"kubernetes executor: BuildIt's image, run as each pod's checkout init container "
        f"(env {ENV['helper_image']})",
    )
    parser.add_argument(
        "--stage-service-account",
        metavar="NAME",
        help=f"kubernetes executor: the service account of stage pods, without a token "
        f"(env {ENV['stage_service_account']}; default buildit-stage)",
    )
    parser.add_argument(
        "--state-dir",
        metavar="DIR",
        help=f"where the agent keeps its token, private to it (env {ENV['state_dir']}; "
        "default ./.buildit-agent)",
    )
    parser.add_argument(
        "--work-dir",
        metavar="DIR",
        help=f"stage workspaces and the Git cache, apart from the state dir (env {ENV['work_dir']}; "
        "default: the state dir's path plus -work)",
    )
    parser.add_argument(
        "--containment",
        choices=("auto", "namespace", "process-group"),
        help="local stages: each command in a PID namespace of its own (namespace: required; auto: "
        f"when the host allows) or only a process group (env {ENV['containment']}; default auto)",
    )
    parser.add_argument(
        "--run-as",
        metavar="USER",
        help="run local stages as this unprivileged user (the agent must run as root), so stage code "
        f"cannot read the agent's token, Git cache or other files (env {ENV['run_as']})",
    )
    parser.add_argument(
        "--network",
        metavar="MODE",
        help=f"Docker network mode for stage containers (env {ENV['network']}; default bridge)",
    )
    parser.add_argument(
        "--stage-cpus",
        metavar="CPUS",
        help="CPU limit of a container stage whose `resources` node sets none, e.g. 2 or 500m "
        f"(env {ENV['stage_cpus']}; default none)",
    )
    parser.add_argument(
        "--stage-memory",
        metavar="SIZE",
        help="memory limit of a container stage whose `resources` node sets none, e.g. 4Gi "
        f"(env {ENV['stage_memory']}; default none)",
    )
    parser.add_argument(
        "--stage-pids",
        metavar="N",
        help="how many processes a container stage may have at once unless its `resources` node "
        f"says (env {ENV['stage_pids']}; default 4096; 0: no limit)",
    )
    parser.add_argument(
        "--report-wait",
        metavar="SECONDS",
        help="when stopping: how long to wait for an unreachable controller to take the stages' "
        "results before keeping them in the state dir for the next start "
        f"(env {ENV['report_wait']}; default 60)",
    )


def _fail(message: str) -> None:
    print(f"{PROG}: {' '.join(message.split())}", file=sys.stderr, flush=True)


def _registration_token(args: argparse.Namespace) -> str | None:
    """The token from --registration-token-file or --registration-token (None: neither given, so
    the settings read the environment). ValueError for both, or an unreadable or empty file."""
    flag = getattr(args, "registration_token", None)
    path = getattr(args, "registration_token_file", None)
    if path is None:
        return cast("str | None", flag)
    if flag is not None:
        raise ValueError(
            "give the registration token once: --registration-token or --registration-token-file"
        )
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or exc
        raise ValueError(f"--registration-token-file {path}: {reason}") from None
    token = lines[0].strip() if lines else ""
    if not token:
        raise ValueError(f"--registration-token-file {path} is empty: write the token on its first line")
    return token


def run(args: argparse.Namespace) -> int:
    """Run one agent with the parsed flags until it is drained; returns the process exit status."""
    try:
        configure_logging(logging.INFO)
        settings = AgentSettings.from_sources(
            controller=getattr(args, "controller", None),
            registration_token=_registration_token(args),
            name=getattr(args, "name", None),
            labels=getattr(args, "labels", None),
            capacity=getattr(args, "capacity", None),
            executor=getattr(args, "executor", None),
            state_dir=getattr(args, "state_dir", None),
            network=getattr(args, "network", None),
            ca_file=getattr(args, "ca_file", None),
            work_dir=getattr(args, "work_dir", None),
            containment=getattr(args, "containment", None),
            run_as=getattr(args, "run_as", None),
            report_wait=getattr(args, "report_wait", None),
            stage_cpus=getattr(args, "stage_cpus", None),
            stage_memory=getattr(args, "stage_memory", None),
            stage_pids=getattr(args, "stage_pids", None),
            namespace=getattr(args, "namespace", None),
            helper_image=getattr(args, "helper_image", None),
            stage_service_account=getattr(args, "stage_service_account", None),
        )
    except ValueError as exc:
        _fail(f"error: {exc}")
        return 2
    if getattr(args, "registration_token", None) is not None:
        logging.getLogger("agent").warning(
            "--registration-token shows in `ps` to every user of this machine: pass the token in "
            "%s or --registration-token-file",
            ENV["registration_token"],
        )
    from agent.errors import AgentExit
    from agent.executors.base import ExecutorError
    from agent.executors.registry import build_executors

    try:
        executors = build_executors(
            settings.executor,
            settings.network,
            settings.containment,
            settings.run_as,
            stage_defaults=settings.stage_defaults,
            kubernetes=settings.kubernetes,
        )
    except ExecutorError as exc:
        _fail(f"error: {exc}")
        return 1
    try:
        return asyncio.run(_serve(settings, executors))
    except AgentExit as exc:
        _fail(exc.message)
        return exc.code
    except KeyboardInterrupt:  # Ctrl-C before the signal handlers were installed
        _fail("interrupted")
        return 130


async def _serve(settings: AgentSettings, executors: Executors) -> int:
    """Run the agent with SIGTERM/SIGINT wired to drain (first) and stop (second)."""
    from agent.runner import Agent

    agent = Agent(settings, executors)
    loop = asyncio.get_running_loop()
    signals = (signal.SIGTERM, signal.SIGINT)
    for sig in signals:
        loop.add_signal_handler(sig, agent.on_signal)
    try:
        return await agent.run()
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
        await executors.close()


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m agent.cli [flags]`: the agent without the `buildit` command around it."""
    parser = argparse.ArgumentParser(prog=PROG, description="Run a BuildIt agent.")
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
