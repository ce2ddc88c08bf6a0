"""`buildit notify add|list|rm|log`: a running controller's outgoing webhooks, over its REST API.

`add` prints the signing secret once (receivers check X-BuildIt-Signature with it); `list`
shows each notification's URL as scheme and host only (a webhook URL can be a credential);
`log` is a notification's delivery log.
"""

from __future__ import annotations

import argparse
import urllib.parse
from typing import Any

# The same controller resolution and REST helper as `buildit repo` (one place to add credentials).
from controller.cli.client import call, server_flag
from controller.cli.client import server_of as server_url

EVENTS = ("fixed", "failed", "finished")


def _scope(notification: dict[str, Any]) -> str:
    pipeline = notification.get("pipeline")
    return f"pipeline {pipeline['name']}" if pipeline else "every pipeline"


def cmd_notify_add(args: argparse.Namespace) -> int:
    """Add a notification; print its id and, this once, its signing secret."""
    body = {
        "url": args.url,
        "pipeline": args.pipeline,
        "events": args.event or None,
        "format": args.format,
        "name": args.name,
    }
    made = call(server_url(args), "POST", "/api/v1/notifications", body)
    print(f"added notification {made['name']} ({made['id']}) for {_scope(made)}: {', '.join(made['events'])}")
    print(f"  signing secret (shown once): {made['secret']}")
    print(
        "  receivers check X-BuildIt-Signature: sha256=HMAC-SHA256(secret, X-BuildIt-Timestamp + '.' + body)"
    )
    return 0


def cmd_notify_list(args: argparse.Namespace) -> int:
    """One line per notification: id, name, scope, format, events, URL (scheme and host)."""
    notifications = call(server_url(args), "GET", "/api/v1/notifications")["notifications"]
    if not notifications:
        print("no notifications: add one with `buildit notify add URL [--pipeline NAME]`")
        return 0
    for n in notifications:
        print(
            f"{n['id']}  {n['name']:<20} {_scope(n):<24} {n['format']:<5} "
            f"{','.join(n['events']):<21} {n['url']}"
        )
    return 0


def cmd_notify_rm(args: argparse.Namespace) -> int:
    """Remove a notification (and its delivery log)."""
    call(server_url(args), "DELETE", f"/api/v1/notifications/{urllib.parse.quote(args.id, safe='')}")
    print(f"removed notification {args.id}")
    return 0


def cmd_notify_log(args: argparse.Namespace) -> int:
    """A notification's deliveries, newest first: when, run, event, status, attempts, last answer."""
    path = f"/api/v1/notifications/{urllib.parse.quote(args.id, safe='')}/deliveries?limit={args.limit}"
    entries = call(server_url(args), "GET", path)["deliveries"]
    if not entries:
        print("no deliveries yet: one is made when a run this notification wants finishes")
        return 0
    for d in entries:
        answer = f"HTTP {d['last_status_code']}" if d["last_status_code"] is not None else "no answer"
        error = f"  {d['last_error']}" if d["last_error"] else ""
        retry = f"  next attempt {d['next_attempt_at']}" if d["next_attempt_at"] else ""
        print(
            f"{d['created_at']}  run {d['run']['number']:<5} {d['event']:<8} {d['status']:<9} "
            f"{d['attempts']} attempt(s), {answer}{error}{retry}"
        )
    return 0


def add_parsers(sub: Any) -> None:
    """The `notify` subcommands."""
    notify = sub.add_parser(
        "notify", help="outgoing webhooks when runs finish, fail or are fixed: add, list, rm, log"
    )
    verbs = notify.add_subparsers(dest="notify_command", required=True, metavar="ACTION")

    add = verbs.add_parser("add", help="post signed JSON (or a Slack message) to URL when a run finishes")
    add.add_argument("url", metavar="URL", help="the https:// URL to POST to")
    add.add_argument(
        "--pipeline", metavar="PIPELINE", help="only runs of this pipeline (name or id); default: all"
    )
    add.add_argument(
        "--event",
        action="append",
        choices=EVENTS,
        help="fixed, failed or finished (repeatable; default: all three; each run is sent once, "
        "as the most specific event it is)",
    )
    add.add_argument(
        "--format",
        choices=("json", "slack"),
        default="json",
        help='json: BuildIt\'s document; slack: {"text": ...} for Slack-compatible incoming webhooks',
    )
    add.add_argument("--name", help="a name for listings (default: the URL's host)")
    server_flag(add)
    add.set_defaults(func=cmd_notify_add)

    listing = verbs.add_parser("list", help="the tenant's notifications (URLs as scheme and host)")
    server_flag(listing)
    listing.set_defaults(func=cmd_notify_list)

    rm = verbs.add_parser("rm", help="remove a notification and its delivery log")
    rm.add_argument("id", metavar="ID")
    server_flag(rm)
    rm.set_defaults(func=cmd_notify_rm)

    log = verbs.add_parser("log", help="a notification's delivery log: status, attempts, last answer")
    log.add_argument("id", metavar="ID")
    log.add_argument("--limit", type=int, default=20, help="how many deliveries (newest first; default 20)")
    server_flag(log)
    log.set_defaults(func=cmd_notify_log)
