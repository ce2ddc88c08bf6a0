"""`buildit pipeline list|show|apply|rm`: stored pipelines of a running controller, over its REST API;
and what `buildit up --pipelines` does with its files at start.

`apply FILE...` is the way to change a pipeline from a file: the pipeline its `pipeline "name"`
node names is created, or updated when the file differs (a new version), or left alone. `rm`
deletes a pipeline with its runs, so it asks first (or takes `--yes`). A watched repository's
pipeline changes by pushing a commit; the controller refuses both for it, saying so.
"""

from __future__ import annotations

import argparse
import sys
import urllib.parse
from pathlib import Path
from typing import TYPE_CHECKING, Any

# The same controller resolution and REST helper as `buildit repo` (one place to add credentials).
from controller.cli.client import call, server_flag
from controller.cli.client import server_of as server_url
from controller.cli.errors import ApiError, CliError, UsageError

if TYPE_CHECKING:
    from controller.deps import Deps


def _read(file: str) -> str:
    path = Path(file)
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"{file}: not UTF-8 text") from None
    except OSError as exc:
        raise UsageError(f"{file}: {exc.strerror or exc}") from None


def _file_name(source: str, file: str) -> str:
    """The name the file's `pipeline` node gives (checked locally first: `buildit validate`'s rules)."""
    from controller.definition.model import PipelineInvalid
    from controller.definition.validate import load

    try:
        return load(source, file).name
    except PipelineInvalid as exc:
        for diagnostic in exc.diagnostics:
            print(diagnostic.format(source), file=sys.stderr)
        raise CliError(f"{file} is invalid ({len(exc.diagnostics)} problem(s)): nothing changed") from None


def _pipelines(server: str) -> list[dict[str, Any]]:
    return list(call(server, "GET", "/api/v1/pipelines")["pipelines"])


def _find(server: str, ref: str) -> dict[str, Any] | None:
    return next((p for p in _pipelines(server) if ref in (p["id"], p["name"])), None)


def _must_find(server: str, ref: str) -> dict[str, Any]:
    found = _find(server, ref)
    if found is None:
        names = ", ".join(p["name"] for p in _pipelines(server)) or "none"
        raise ApiError(f"no pipeline named or with id '{ref}' (pipelines: {names})")
    return found


def cmd_list(args: argparse.Namespace) -> int:
    """One line per pipeline: name, version, runs, where its file comes from."""
    pipelines = _pipelines(server_url(args))
    if not pipelines:
        print("no pipelines: add one with `buildit pipeline apply FILE`")
    for p in pipelines:
        origin = "repository" if p["repository_id"] else "stored"
        print(f"{p['name']:<28} v{p.get('version', 1):<4} {p['runs']:>6} runs  {origin:<10} [{p['id']}]")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    """Print a pipeline's file (or one version of it) to stdout, to edit and `apply` again."""
    server = server_url(args)
    found = _must_find(server, args.pipeline)
    if args.version is not None:
        body = call(server, "GET", f"/api/v1/pipelines/{found['id']}/versions/{args.version}")
    else:
        body = call(server, "GET", f"/api/v1/pipelines/{found['id']}")
    sys.stdout.write(body["config"])
    return 0


def cmd_apply(args: argparse.Namespace) -> int:
    """Create each file's pipeline, or update it when the file changed; say which."""
    server = server_url(args)
    # Every file read and checked before anything changes.
    named = [(file, source, _file_name(source, file)) for file, source in ((f, _read(f)) for f in args.files)]
    for file, source, name in named:
        found = _find(server, name)
        if found is None:
            created = call(server, "POST", "/api/v1/pipelines", {"config": source})
            print(f"created pipeline {created['name']} from {file}")
            continue
        try:
            edited = call(server, "PUT", f"/api/v1/pipelines/{found['id']}", {"config": source})
        except ApiError as exc:
            raise ApiError(f"{file}: {exc}") from None
        if edited["changed"]:
            print(f"updated pipeline {edited['name']} from {file} (version {edited['version']})")
        else:
            print(f"unchanged pipeline {edited['name']} ({file}, version {edited['version']})")
    return 0


def cmd_rm(args: argparse.Namespace) -> int:
    """Delete a pipeline with its runs, logs and artifacts, once confirmed."""
    server = server_url(args)
    found = _must_find(server, args.pipeline)
    what = f"pipeline {found['name']} with its {found['runs']} run(s), their logs and artifacts"
    if not args.yes:
        if sys.stdin is None or not sys.stdin.isatty():
            raise UsageError(f"deleting {what} cannot be undone: pass --yes to confirm")
        answer = input(f"delete {what}? Runs still going are cancelled. [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("nothing deleted")
            return 1
    call(server, "DELETE", f"/api/v1/pipelines/{urllib.parse.quote(found['id'])}")
    print(f"deleted {what}")
    return 0


async def sync_files(deps: Deps, files: list[Path]) -> list[str]:
    """`buildit up --pipelines`: each file's pipeline created, updated when its file changed (said
    on stdout), or left alone; invalid files are skipped, saying so. Returns the names created."""
    from controller.errors import BuildItError, Unprocessable
    from controller.pipelines.commands import PipelineCommands

    commands = PipelineCommands(deps.scheduler, deps.logs, deps.artifacts, deps.org, deps.tenant)
    created: list[str] = []
    for file in files:
        try:
            synced = await commands.sync_file(file.read_text(encoding="utf-8"))
        except Unprocessable as exc:
            problems = len(exc.extra.get("diagnostics", ()))
            print(f"buildit: skipped {file}: {problems} problem(s)", file=sys.stderr)
            continue
        except BuildItError as exc:
            print(f"buildit: skipped {file}: {exc.message}", file=sys.stderr)
            continue
        if synced.outcome == "created":
            created.append(synced.name)
        elif synced.outcome == "updated":
            print(f"updated pipeline {synced.name} from {file} (version {synced.version})", flush=True)
    return created


def add_parsers(sub: Any) -> None:
    """The `pipeline` subcommands."""

    pipeline = sub.add_parser("pipeline", help="stored pipelines: list, show, apply (create/update), rm")
    actions = pipeline.add_subparsers(dest="pipeline_command", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="pipelines with their version and number of runs")
    server_flag(listing)
    listing.set_defaults(func=cmd_list)
    show = actions.add_parser("show", help="print a pipeline's file (to edit it and apply it again)")
    show.add_argument("pipeline", metavar="PIPELINE", help="name or id")
    show.add_argument("--version", type=int, help="an earlier version of the file")
    server_flag(show)
    show.set_defaults(func=cmd_show)
    apply = actions.add_parser(
        "apply", help="create the pipeline each file names, or update it when the file changed"
    )
    apply.add_argument("files", nargs="+", metavar="FILE", help="pipeline file(s) (.kdl)")
    server_flag(apply)
    apply.set_defaults(func=cmd_apply)
    remove = actions.add_parser("rm", help="delete a pipeline with its runs, logs and artifacts")
    remove.add_argument("pipeline", metavar="PIPELINE", help="name or id")
    remove.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    server_flag(remove)
    remove.set_defaults(func=cmd_rm)
