"""`buildit runs`, `buildit logs` and `buildit cancel`: the daily look at runs, REST clients.

A run is named on the command line as `PIPELINE#NUMBER` (PIPELINE: a pipeline or a watched
repository, by name or id; NUMBER as the UI and `buildit trigger` show it), as `PIPELINE` alone
for its newest run, or by the URL of its page. Numbers are what people see; run ids are for
integrations, so the CLI does not ask for them.
"""

from __future__ import annotations

import argparse
import re
import sys
import urllib.parse
from datetime import UTC, datetime
from typing import Any

from agent.contract import logmarks
from controller.cli.client import call, call_text, server_flag, server_of
from controller.cli.errors import EXIT_INTERRUPTED, EXIT_OK, ApiError, UsageError
from controller.cli.follow import FINISHED, exit_code, follow_log, run_label
from controller.cli.output import ago, console, escape, human_seconds, parse_time

STATUSES = ("pending", "running", "succeeded", "failed", "cancelled", "timed_out", "error", "active")
_STYLES = {
    "succeeded": "green",
    "failed": "red",
    "timed_out": "red",
    "error": "red",
    "cancelled": "yellow",
    "running": "cyan",
    "pending": "dim",
}
_RUN_URL = re.compile(r"/pipelines/([0-9a-fA-F-]{36})/runs/(\d+)/?(?:[?#].*)?\Z")
RUN_FORMS = "PIPELINE#NUMBER (e.g. hello#3), PIPELINE for its newest run, or the run page's URL"


def _quote(text: str) -> str:
    return urllib.parse.quote(text, safe="")


def find_run(server: str, ref: str) -> tuple[dict[str, Any], str]:
    """The run `ref` names (see the module docstring), with its stages, and its pipeline's name."""
    text = ref.strip()
    url = _RUN_URL.search(text)
    if url is not None:
        run = call(server, "GET", f"/api/v1/pipelines/{url.group(1)}/runs/{url.group(2)}")
        return run, _pipeline_name(server, run)
    target, sep, number_text = text.rpartition("#")
    if not sep:
        target, number_text = text, ""
    if not target:
        raise UsageError(
            f"run {ref!r}: expected PIPELINE#NUMBER (e.g. hello#3) or PIPELINE for its newest run"
        )
    if sep and not (number_text.isdigit() and int(number_text) >= 1):
        raise UsageError(f"run {ref!r}: the part after '#' must be a run number (1, 2, …), e.g. {target}#1")
    newest = call(server, "GET", f"/api/v1/runs?target={_quote(target)}&limit=1")["runs"]
    if not newest:
        raise ApiError(f"{target} has no runs yet: start one with `buildit trigger {target}`")
    name = str(newest[0]["pipeline_name"])
    number = int(number_text) if sep else int(newest[0]["number"])
    try:
        run = call(server, "GET", f"/api/v1/pipelines/{newest[0]['pipeline_id']}/runs/{number}")
    except ApiError as exc:
        if str(exc).startswith("404"):
            raise ApiError(
                f"{name} has no run {number} (its newest is #{newest[0]['number']}; "
                f"list them with `buildit runs {target}`)"
            ) from None
        raise
    return run, name


def _pipeline_name(server: str, run: dict[str, Any]) -> str:
    pipeline = call(server, "GET", f"/api/v1/pipelines/{run['pipeline_id']}")
    return str(pipeline["name"])


# ------------------------------------------------------------------ runs


def cmd_runs(args: argparse.Namespace) -> int:
    """A table of recent runs, newest first: to see what ran, what failed, and what to look at."""
    from rich.table import Table

    server = server_of(args)
    query = {"limit": str(args.limit)}
    if args.target:
        query["target"] = args.target
    if args.status:
        query["status"] = args.status
    if args.branch:
        query["branch"] = args.branch
    found = call(server, "GET", f"/api/v1/runs?{urllib.parse.urlencode(query)}")
    out = console()
    if not found["runs"]:
        what = " matching those filters" if args.status or args.branch else ""
        hint = f"buildit trigger {args.target}" if args.target else "buildit trigger NAME"
        out.print(f"no runs{what} yet: start one with `{hint}`", highlight=False, markup=False)
        return EXIT_OK
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("RUN", "STATUS", "BRANCH", "COMMIT", "STARTED", "DURATION"):
        table.add_column(column, no_wrap=column != "BRANCH")
    now = datetime.now(UTC)
    for run in found["runs"]:
        status = str(run["status"])
        if run.get("cancel_requested") and status not in FINISHED:
            status += " (cancelling)"
        table.add_row(
            run_label(run, run["pipeline_name"]),
            f"[{_STYLES.get(run['status'], '')}]{status}[/]",
            escape(run["branch"] or "—"),
            escape(run["sha"][:10] if run["sha"] else "—"),
            ago(parse_time(run.get("started_at")), now),
            _took(run, now),
        )
    out.print(table)
    if found["total"] > len(found["runs"]):
        out.print(f"[dim]{len(found['runs'])} of {found['total']}; --limit N shows more[/]", highlight=False)
    return EXIT_OK


def _took(run: dict[str, Any], now: datetime) -> str:
    """A finished run's duration: the time its stages ran (`duration_s`: idle time before a retry
    does not count); a running one's time since it started, with "…"."""
    if run.get("duration_s") is not None:
        return human_seconds(float(run["duration_s"]))
    began = parse_time(run.get("started_at"))
    if began is None:
        return "—"
    ended = parse_time(run.get("finished_at"))
    if ended is None:
        return human_seconds((now - began).total_seconds()) + "…"
    return human_seconds((ended - began).total_seconds())


# ------------------------------------------------------------------ logs


def cmd_logs(args: argparse.Namespace) -> int:
    """Print a stage's log; with -f, follow it until the stage ends and exit with its result."""
    server = server_of(args)
    run, name = find_run(server, args.run)
    stage = next((s for s in run["stages"] if s["name"] == args.stage), None)
    if stage is None:
        names = ", ".join(s["name"] for s in run["stages"]) or "none"
        raise UsageError(f"{run_label(run, name)} has no stage {args.stage!r} (its stages: {names})")
    attempt = int(args.attempt or stage["attempt"])
    if not 1 <= attempt <= int(stage["attempt"]):
        raise UsageError(f"stage {args.stage!r} has attempts 1 to {stage['attempt']}, not {attempt}")
    out = sys.stdout.buffer
    if not args.follow:
        _print_stored(server, run, args.stage, attempt)
        return EXIT_OK
    try:
        status = follow_log(server, str(run["id"]), args.stage, attempt, out)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    code = exit_code(status)
    if status == "skipped":
        # Skipped by its own `when` is not a failure; skipped because a need failed is.
        again = call(server, "GET", f"/api/v1/pipelines/{run['pipeline_id']}/runs/{run['number']}")
        message = next((s["message"] for s in again["stages"] if s["name"] == args.stage), "")
        code = EXIT_OK if "'when'" in str(message) else code
    print(f"buildit: {run_label(run, name)} {args.stage}: {status.replace('_', ' ')}", file=sys.stderr)
    return code


def _print_stored(server: str, run: dict[str, Any], stage: str, attempt: int) -> None:
    """The stored log as a terminal shows it: BuildIt's markers (agent.contract.logmarks) left out."""
    base = f"/api/v1/pipelines/{run['pipeline_id']}/runs/{run['number']}/stages/{_quote(stage)}/log"
    offset = 0
    plain = logmarks.PlainStream()
    while True:
        data, headers = call_text(server, f"{base}?offset={offset}&attempt={attempt}")
        sys.stdout.buffer.write(plain.feed(data))
        sys.stdout.buffer.flush()
        following = int(headers.get("X-Next-Offset", offset + len(data)))
        if not data or following >= int(headers.get("X-Log-Size", following)):
            sys.stdout.buffer.write(plain.flush())
            sys.stdout.buffer.flush()
            return
        offset = following


# ------------------------------------------------------------------ cancel


def cmd_cancel(args: argparse.Namespace) -> int:
    """Cancel a run that has not finished: its running stages are told to stop at once."""
    server = server_of(args)
    run, name = find_run(server, args.run)
    body = {"reason": args.reason} if args.reason else None
    done = call(server, "POST", f"/api/v1/pipelines/{run['pipeline_id']}/runs/{run['number']}/cancel", body)
    stopping = [s["name"] for s in done["stages"] if s["status"] in ("running", "queued")]
    state = "cancelled" if done["status"] in FINISHED else "cancelling"
    tail = f" (stopping {', '.join(stopping)})" if stopping and state == "cancelling" else ""
    print(f"{state} {run_label(done, name)}{tail}")
    return EXIT_OK


# ------------------------------------------------------------------ parsers


def add_parsers(sub: Any) -> None:
    """The `runs`, `logs` and `cancel` subcommands."""
    runs = sub.add_parser("runs", help="recent runs, newest first: status, branch, commit, times")
    runs.add_argument(
        "target", nargs="?", metavar="PIPELINE|REPO", help="only this pipeline or repository (name or id)"
    )
    runs.add_argument("--limit", "-n", type=_count, default=20, help="how many (1-200, default 20)")
    runs.add_argument(
        "--status", choices=STATUSES, help="only runs in this status (active: pending or running)"
    )
    runs.add_argument("--branch", help="only runs of this branch")
    server_flag(runs)
    runs.set_defaults(func=cmd_runs)

    logs = sub.add_parser("logs", help="a stage's log; -f follows it until the stage ends")
    logs.add_argument(
        "run", metavar="RUN", help="PIPELINE#NUMBER (e.g. hello#3), or PIPELINE for its newest run"
    )
    logs.add_argument("stage", metavar="STAGE", help="the stage's name")
    logs.add_argument(
        "-f",
        "--follow",
        action="store_true",
        help="follow the log live until the stage ends; exit 0 if it succeeded "
        "(1 failed or timed out, 3 cancelled, 4 error)",
    )
    logs.add_argument("--attempt", type=_count, help="an earlier attempt (default: the latest)")
    server_flag(logs)
    logs.set_defaults(func=cmd_logs)

    cancel = sub.add_parser("cancel", help="cancel a run that has not finished")
    cancel.add_argument("run", metavar="RUN", help=RUN_FORMS)
    cancel.add_argument("--reason", metavar="TEXT", help="why (one line), added to the stages' message")
    server_flag(cancel)
    cancel.set_defaults(func=cmd_cancel)


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if not 1 <= value <= 200:
        raise argparse.ArgumentTypeError(f"expected 1 to 200, got {value}")
    return value
