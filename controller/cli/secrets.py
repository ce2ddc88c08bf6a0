"""`buildit secret set|list|rm`: the secrets of a running controller's tenant, over its REST API.

A value is never taken from the command line (it would land in shell history and in `ps`): it is
read from standard input (without echo when that is a terminal) or from `--from-file PATH`. Values
cannot be read back: `list` shows names, scopes and who set them when.
"""

from __future__ import annotations

import argparse
import getpass
import sys
import urllib.parse
from pathlib import Path
from typing import Any

# The same controller resolution and REST helper as `buildit repo` (one place to add credentials).
from controller.cli.client import call, server_flag
from controller.cli.client import server_of as server_url
from controller.cli.errors import UsageError

MAX_VALUE_BYTES = 64 * 1024


def read_value(args: argparse.Namespace) -> str:
    """The secret's value: `--from-file` (exact contents), a hidden prompt on a terminal, or stdin
    (one trailing newline removed, so `echo VALUE | buildit secret set NAME` stores VALUE)."""
    if args.from_file:
        path = Path(args.from_file)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise UsageError(f"--from-file {path}: {exc.strerror or exc}") from None
        where = f"--from-file {path}"
    elif sys.stdin is not None and sys.stdin.isatty():
        text = getpass.getpass(f"value of {args.name} (input hidden): ")
        data = text.encode("utf-8", "surrogateescape")
        where = "the prompt"
    else:
        data = sys.stdin.buffer.read() if sys.stdin is not None else b""
        if data.endswith(b"\r\n"):
            data = data[:-2]
        elif data.endswith(b"\n"):
            data = data[:-1]
        where = "standard input"
    if not data:
        raise UsageError(
            f"the value from {where} is empty: pipe it in (`buildit secret set {args.name} < file`), "
            "type it at the prompt, or use --from-file PATH"
        )
    if len(data) > MAX_VALUE_BYTES:
        raise UsageError(f"the value from {where} is {len(data):,} bytes; a secret holds at most 64 KiB")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(
            f"the value from {where} is not UTF-8 text: store binary data base64-encoded "
            "(e.g. base64 -w0 FILE | buildit secret set NAME)"
        ) from None


def _scope_words(secret: dict[str, Any]) -> str:
    for kind in ("pipeline", "repository"):
        if secret.get(kind):
            return f"{kind} {secret[kind]['name']}"
    return "tenant-wide"


def cmd_secret_set(args: argparse.Namespace) -> int:
    """Store a secret (its value from stdin, a hidden prompt or --from-file); print what was set."""
    value = read_value(args)
    body = {"value": value, "repository": args.repository, "pipeline": args.pipeline}
    secret = call(server_url(args), "PUT", f"/api/v1/secrets/{urllib.parse.quote(args.name, safe='')}", body)
    verb = "set" if secret["created_at"] == secret["updated_at"] else "updated"
    print(f"{verb} secret {secret['name']} ({_scope_words(secret)})")
    return 0


def cmd_secret_list(args: argparse.Namespace) -> int:
    """One line per secret: name, scope, last change and by whom (never a value)."""
    secrets = call(server_url(args), "GET", "/api/v1/secrets")["secrets"]
    if not secrets:
        print("no secrets: set one with `buildit secret set NAME` (the value is read from stdin)")
        return 0
    width = max(len(s["name"]) for s in secrets)
    for secret in secrets:
        scope = _scope_words(secret)
        print(f"{secret['name']:<{width}}  {scope:<28} {secret['updated_at']}  {secret['updated_by']}")
    return 0


def cmd_secret_rm(args: argparse.Namespace) -> int:
    """Delete a secret (tenant-wide, or the one narrowed with --repository / --pipeline)."""
    query = {k: v for k, v in (("repository", args.repository), ("pipeline", args.pipeline)) if v}
    suffix = f"?{urllib.parse.urlencode(query)}" if query else ""
    call(server_url(args), "DELETE", f"/api/v1/secrets/{urllib.parse.quote(args.name, safe='')}{suffix}")
    where = f"{next(iter(query))} {next(iter(query.values()))}" if query else "tenant-wide"
    print(f"removed secret {args.name} ({where})")
    return 0


def add_parsers(sub: Any) -> None:
    """The `secret` subcommands."""
    secret = sub.add_parser(
        "secret", help="secrets for ${secrets.NAME}: set, list, rm (values are write-only)"
    )
    verbs = secret.add_subparsers(dest="secret_command", required=True, metavar="ACTION")

    def common(parser: argparse.ArgumentParser, scoped: bool) -> None:
        if scoped:
            scope = parser.add_mutually_exclusive_group()
            scope.add_argument("--repository", metavar="REPO", help="only for this repository (name or id)")
            scope.add_argument("--pipeline", metavar="PIPELINE", help="only for this pipeline (name or id)")
        server_flag(parser)

    set_ = verbs.add_parser(
        "set", help="set a secret; the value is read from stdin (hidden prompt on a terminal), never argv"
    )
    set_.add_argument("name", metavar="NAME", help="as in ${secrets.NAME}: letters, digits, '_'")
    set_.add_argument(
        "--from-file", metavar="PATH", help="read the value from this file (exact contents) instead of stdin"
    )
    common(set_, scoped=True)
    set_.set_defaults(func=cmd_secret_set)

    listing = verbs.add_parser("list", help="the tenant's secrets: names, scopes, last change (no values)")
    common(listing, scoped=False)
    listing.set_defaults(func=cmd_secret_list)

    rm = verbs.add_parser("rm", help="delete a secret")
    rm.add_argument("name", metavar="NAME")
    common(rm, scoped=True)
    rm.set_defaults(func=cmd_secret_rm)
