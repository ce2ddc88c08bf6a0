"""The `buildit` command, and the composition root: the only place that wires agent code in.

One module per verb group: `local` (validate, run), `serve` (controller, agent, up), `repos`
(repo add|list|remove, trigger: REST clients), `runs` (runs, logs, cancel: REST and /ws
clients; they find the controller through `address`), `secrets` (secret set|list|rm: a REST client),
`notify` (notify add|list|rm|log: a REST client), `admin` (offline maintenance: rotate-key). Heavy
imports happen inside the subcommand that needs them, so `buildit validate` and `buildit run
--executor local` start fast.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from controller import __version__
from controller.cli.account import add_parsers as add_account_parsers
from controller.cli.admin import add_parsers as add_admin_parsers
from controller.cli.errors import EXIT_INTERRUPTED, CliError
from controller.cli.local import cmd_run, cmd_validate
from controller.cli.notify import add_parsers as add_notify_parsers
from controller.cli.repos import add_parsers as add_repo_parsers
from controller.cli.runs import add_parsers as add_run_parsers
from controller.cli.secrets import add_parsers as add_secret_parsers
from controller.cli.serve import add_controller_flags, cmd_agent, cmd_controller, cmd_up


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
    add_controller_flags(controller)
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
    add_controller_flags(up)
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
        "--ca-file",
        metavar="PATH",
        help="with --grpc-tls-cert: the CA the embedded agent trusts (env BUILDIT_CA_FILE; "
        "default: the certificate itself, for a self-signed one)",
    )
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

    add_repo_parsers(sub)
    add_run_parsers(sub)
    add_account_parsers(sub)
    add_secret_parsers(sub)
    add_notify_parsers(sub)
    add_admin_parsers(sub)
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
    except CliError as exc:
        print(f"buildit: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    return code
