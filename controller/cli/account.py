"""`buildit login|logout` and `buildit apikey create|list|revoke`: the CLI's own credentials.

`login` exchanges a user name and password for a personal API key (POST /api/v1/auth/token with
`Authorization: Basic`) and keeps it for that server (controller.cli.credentials, mode 0600).
"""

from __future__ import annotations

import argparse
import base64
import getpass
import socket
import sys
from typing import Any

from controller.cli import credentials
from controller.cli.client import call, server_flag
from controller.cli.client import server_of as _server
from controller.cli.errors import UsageError


def _read_password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    if not sys.stdin.isatty():
        raise UsageError("no terminal to ask for the password: pipe it with --password-stdin")
    return getpass.getpass(f"password for {args.username}: ")


def cmd_login(args: argparse.Namespace) -> int:
    """Sign in and keep a personal API key for the server."""
    server = _server(args)
    password = _read_password(args)
    basic = base64.b64encode(f"{args.username}:{password}".encode()).decode()
    name = args.key_name or f"buildit CLI on {socket.gethostname()}"
    answer = call(
        server, "POST", "/api/v1/auth/token", {"name": name}, headers={"Authorization": f"Basic {basic}"}
    )
    path = credentials.store(server, str(answer["key"]))
    print(f"signed in to {server} as {answer['user']} (key {answer['prefix']}…, kept in {path})")
    return 0


def cmd_logout(args: argparse.Namespace) -> int:
    """Forget the server's key (revoking it on the server first, when it still works)."""
    server = _server(args)
    token = credentials.token_for(server)
    if token and not args.keep_key:
        keys = call(server, "GET", "/api/v1/apikeys")["keys"]
        prefix = token.split("_")[1] if token.count("_") >= 2 else ""
        for key in keys:
            if key["prefix"] == prefix and not key["revoked"]:
                call(server, "DELETE", f"/api/v1/apikeys/{key['id']}")
    forgotten = credentials.forget(server)
    print(f"signed out of {server}" if forgotten else f"no stored key for {server}")
    return 0


def cmd_apikey_create(args: argparse.Namespace) -> int:
    """Create a key and print it once."""
    body: dict[str, Any] = {
        "name": args.name,
        "service": args.service,
        "this_tenant_only": args.this_tenant_only,
    }
    if args.role:
        body["role"] = args.role
    if args.expires:
        body["expires_at"] = args.expires
    answer = call(_server(args), "POST", "/api/v1/apikeys", body)
    print(answer["key"])
    print(f"(shown once; prefix {answer['prefix']}, role {answer['role'] or 'your own'})", file=sys.stderr)
    return 0


def cmd_apikey_list(args: argparse.Namespace) -> int:
    """List keys (never their values)."""
    suffix = "?service=true" if args.service else ""
    keys = call(_server(args), "GET", f"/api/v1/apikeys{suffix}")["keys"]
    if not keys:
        print("no API keys")
    for key in keys:
        state = (
            "revoked" if key["revoked"] else f"expires {key['expires_at']}" if key["expires_at"] else "active"
        )
        used = key["last_used_at"] or "never"
        print(
            f"{key['id']}  {key['prefix']}…  {key['name']}  role={key['role'] or 'own'}  {state}"
            f"  last used {used}"
        )
    return 0


def cmd_apikey_revoke(args: argparse.Namespace) -> int:
    """Revoke a key by id."""
    suffix = "?service=true" if args.service else ""
    call(_server(args), "DELETE", f"/api/v1/apikeys/{args.key_id}{suffix}")
    print(f"revoked {args.key_id}")
    return 0


def add_parsers(sub: Any) -> None:
    """The `login`, `logout` and `apikey` subcommands."""

    login = sub.add_parser("login", help="sign in to a controller and keep an API key for the CLI")
    server_flag(login)
    login.add_argument("--username", "-u", default="admin", help="user name (default admin)")
    login.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    login.add_argument("--key-name", help="name of the key made for this CLI (default: with the host name)")
    login.set_defaults(func=cmd_login)
    logout = sub.add_parser("logout", help="revoke and forget the CLI's key for a controller")
    server_flag(logout)
    logout.add_argument("--keep-key", action="store_true", help="forget it locally without revoking it")
    logout.set_defaults(func=cmd_logout)

    apikey = sub.add_parser("apikey", help="API keys: create, list, revoke")
    apikey_sub = apikey.add_subparsers(dest="apikey_command", required=True, metavar="ACTION")
    create = apikey_sub.add_parser("create", help="create a key (printed once)")
    create.add_argument("name", help="what the key is for")
    create.add_argument("--role", help="service key role, or a personal key's ceiling (viewer … admin)")
    create.add_argument("--service", action="store_true", help="a service key of the current tenant")
    create.add_argument("--this-tenant-only", action="store_true", help="a personal key for this tenant only")
    create.add_argument("--expires", metavar="ISO-TIME", help="expiry, e.g. 2027-01-31T00:00:00Z")
    server_flag(create)
    create.set_defaults(func=cmd_apikey_create)
    listing = apikey_sub.add_parser("list", help="your keys (or --service: the tenant's)")
    listing.add_argument("--service", action="store_true")
    server_flag(listing)
    listing.set_defaults(func=cmd_apikey_list)
    revoke = apikey_sub.add_parser("revoke", help="revoke a key now")
    revoke.add_argument("key_id", metavar="ID")
    revoke.add_argument("--service", action="store_true")
    server_flag(revoke)
    revoke.set_defaults(func=cmd_apikey_revoke)
