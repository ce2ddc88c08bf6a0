"""`buildit repo add|list|remove` and `buildit trigger`: talk to a running controller's REST API.

The controller is found by controller.cli.address (`--server`, BUILDIT_URL, the address a local
`buildit up` recorded, the default); requests go through controller.cli.client. `trigger --follow`
streams the run (controller.cli.follow) and exits with its result.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from controller.cli.client import DEFAULT_SERVER, call, server_flag
from controller.cli.client import server_of as _server
from controller.cli.errors import EXIT_INTERRUPTED, EXIT_OK, ApiError, CliError, UsageError

# `call`, `_server` and DEFAULT_SERVER stay importable from here for the other client verb modules.
__all__ = ["DEFAULT_SERVER", "_server", "add_parsers", "call"]


def _find_repo(server: str, ref: str) -> dict[str, Any]:
    repos = call(server, "GET", "/api/v1/repos")["repos"]
    for repo in repos:
        if ref in (repo["id"], repo["name"]):
            return dict(repo)
    names = ", ".join(r["name"] for r in repos) or "none registered"
    raise ApiError(f"no repository named or with id '{ref}' (repositories: {names})")


def cmd_repo_add(args: argparse.Namespace) -> int:
    """Register a repository, print its id, webhook secret and hook URLs, and say what happens next
    (registering builds nothing already pushed): or, with --run-now, run its default branch now."""
    if args.follow and not args.run_now:
        raise UsageError("--follow goes with --run-now (a run to follow)")
    server = _server(args)
    url = args.url
    if "://" not in url and not _scp_like(url):
        url = str(Path(url).resolve())  # a local path means the same to the controller as here
    body: dict[str, Any] = {"url": url, "branches": args.branch, "run_each_commit": args.each_commit}
    if args.name:
        body["name"] = args.name
    if args.poll_interval is not None:
        body["poll_interval_s"] = args.poll_interval
    repo = call(server, "POST", "/api/v1/repos", body)
    name = repo["name"]
    watching = ", ".join(repo["branches"]) or "its default branch"
    print(f"registered {name} ({repo['id']}), watching {watching}")
    print(f"  webhook secret: {repo['webhook_secret']}  (shown once: configure it on the forge's webhook)")
    print(f"  hooks: {server}/hooks/github | /hooks/gitea | /hooks/gitlab | {server}/hooks/git/{repo['id']}")
    # The repository's pipeline holds the .buildit.kdl read from the default branch at registration.
    pipeline = call(server, "GET", f"/api/v1/pipelines/{repo['pipeline_id']}")
    has_file = bool(str(pipeline.get("config") or "").strip())
    if not has_file:
        message = f"{name} has no .buildit.kdl on its default branch yet: commit one, and the push runs it"
        if args.run_now:
            raise CliError(f"--run-now: nothing to run: {message}")
        print(f"  next: {message}")
        return 0
    if not args.run_now:
        print(
            f"  next: {name} holds a .buildit.kdl on its default branch, and nothing was run "
            f"(commits already pushed are not built): push a commit or run `buildit trigger {name}`"
        )
        return 0
    run = call(server, "POST", "/api/v1/runs", {"target": repo["id"]})
    return _started(server, run, name, follow=args.follow)


def cmd_repo_list(args: argparse.Namespace) -> int:
    """One line per repository: name, status, branches, URL."""
    repos = call(_server(args), "GET", "/api/v1/repos")["repos"]
    if not repos:
        print("no repositories: add one with `buildit repo add URL|PATH`")
    for repo in repos:
        status = repo["status"] + (f" ({repo['status_message']})" if repo["status_message"] else "")
        branches = ", ".join(repo["branches"]) or "default branch"
        print(f"{repo['name']:<24} {status:<10} {branches:<20} {repo['url']}  [{repo['id']}]")
    return 0


def cmd_repo_remove(args: argparse.Namespace) -> int:
    """Stop watching a repository (its runs are deleted with it)."""
    server = _server(args)
    repo = _find_repo(server, args.repo)
    call(server, "DELETE", f"/api/v1/repos/{repo['id']}")
    print(f"removed {repo['name']}")
    return 0


def cmd_trigger(args: argparse.Namespace) -> int:
    """Run a repository's branch head (or one commit), or a stored pipeline, now; print the run, and
    with --follow stream it and exit with its result."""
    server = _server(args)
    body: dict[str, Any] = {"target": args.target, "env": _env(args.env)}
    body.update({k: v for k, v in (("branch", args.branch), ("sha", args.sha)) if v})
    run = call(server, "POST", "/api/v1/runs", body)
    return _started(server, run, args.target, follow=args.follow)


def _started(server: str, run: dict[str, Any], target: str, follow: bool) -> int:
    """Print a run just started; with `follow`, stream it to its end and return its exit code."""
    link = f"{server}/pipelines/{run['pipeline_id']}/runs/{run['number']}"
    where = f"({run['branch']} @ {run['sha'][:12]})" if run["sha"] else f"({run['branch']})"
    print(f"{target} run {run['number']}: {run['status']} {where} -> {link}", flush=True)
    if not follow:
        return EXIT_OK
    from controller.cli.follow import follow_run, run_label
    from controller.cli.output import console

    name = str(call(server, "GET", f"/api/v1/pipelines/{run['pipeline_id']}")["name"])
    try:
        return follow_run(server, run, name, console())
    except KeyboardInterrupt:
        print(
            f"\nbuildit: stopped following; {run_label(run, name)} goes on "
            f"(`buildit cancel {run_label(run, name)}` stops it)",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED


def _env(items: list[str]) -> dict[str, str]:
    """`--env NAME=VALUE` options as a dict (the controller checks names and sizes)."""
    env: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise UsageError(f"--env {item!r}: expected NAME=VALUE")
        env[name] = value
    return env


def _scp_like(url: str) -> bool:
    head, sep, _ = url.partition(":")
    return bool(sep) and "@" in head and "/" not in head


def add_parsers(sub: Any) -> None:
    """The `repo` and `trigger` subcommands."""

    repo = sub.add_parser("repo", help="watched repositories: add, list, remove")
    repo_sub = repo.add_subparsers(dest="repo_command", required=True, metavar="ACTION")
    add = repo_sub.add_parser("add", help="register a repository (URL or local path) and watch it")
    add.add_argument("url", metavar="URL|PATH", help="https://, ssh://, git://, file:// URL or a local path")
    add.add_argument(
        "--branch",
        action="append",
        default=[],
        metavar="GLOB",
        help="branches to build (repeatable; globs like release/*; default: the default branch)",
    )
    add.add_argument("--name", help="name for the repository and its pipeline (default: from the URL)")
    add.add_argument(
        "--poll-interval", type=int, metavar="SECONDS", help="remote polling interval (default 60)"
    )
    add.add_argument(
        "--each-commit", action="store_true", help="run every pushed commit, not just the newest"
    )
    add.add_argument(
        "--run-now",
        action="store_true",
        help="run the default branch's .buildit.kdl now (registering builds nothing already pushed)",
    )
    add.add_argument("--follow", action="store_true", help="with --run-now: as `buildit trigger --follow`")
    server_flag(add)
    add.set_defaults(func=cmd_repo_add)
    listing = repo_sub.add_parser("list", help="registered repositories and their status")
    server_flag(listing)
    listing.set_defaults(func=cmd_repo_list)
    remove = repo_sub.add_parser("remove", help="stop watching a repository and delete its runs")
    remove.add_argument("repo", metavar="REPO", help="name or id")
    server_flag(remove)
    remove.set_defaults(func=cmd_repo_remove)

    trigger = sub.add_parser("trigger", help="run a repository's branch (or one commit), or a pipeline, now")
    trigger.add_argument("target", metavar="TARGET", help="repository or pipeline, by name or id")
    trigger.add_argument("--branch", help="branch to run (default: the default branch)")
    trigger.add_argument("--sha", help="exact commit to run (full 40-character sha)")
    trigger.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra variable for this run, ${env.NAME} in the pipeline (repeatable)",
    )
    trigger.add_argument(
        "--follow",
        "-f",
        action="store_true",
        help="stream the run's progress until it ends; exit 0 only if it succeeded "
        "(1 failed or timed out, 3 cancelled, 4 error)",
    )
    server_flag(trigger)
    trigger.set_defaults(func=cmd_trigger)
