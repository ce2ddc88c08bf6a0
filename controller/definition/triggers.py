"""Validation of one `trigger` node: its kind, then the values and properties that kind takes."""

from __future__ import annotations

import re

from controller.definition.cron import EXAMPLE as CRON_EXAMPLE
from controller.definition.cron import CronError, check_cron
from controller.definition.grammar import TRIGGERS, Collector, check_props, did_you_mean
from controller.definition.kdl import RawNode
from controller.definition.model import TRIGGER_KINDS, Trigger

# What git refuses in a branch name (as repository registration checks); `*?[` are glob characters.
_BRANCH_BAD_CHARS = re.compile(r"[\s~^:\\]")
_GLOB_CHARS = re.compile(r"[*?\[]")


def _branch_problem(branch: str) -> str | None:
    if not branch.strip():
        return "is empty"
    if _BRANCH_BAD_CHARS.search(branch):
        return "is not a valid branch name (no spaces or ~ ^ : \\)"
    return None


def build_trigger(node: RawNode, out: Collector) -> Trigger | None:
    """Validate one `trigger` node: its kind, then the values and properties that kind takes.

    Returns None when the node is unusable; its problems are reported.
    """
    kinds = ", ".join(TRIGGER_KINDS[:-1]) + " or " + TRIGGER_KINDS[-1]
    if not node.args:
        out.node(node, f"'trigger' needs a kind: {kinds}", 'example: trigger "push"')
        return None
    kind = node.args[0]
    if not isinstance(kind, str):
        out.node(
            node,
            f"the kind of 'trigger' is a quoted string ({kinds}), got {kind!r}",
            'example: trigger "push"',
        )
        return None
    rule = TRIGGERS.get(kind)
    if rule is None:
        out.node(
            node,
            f"unknown trigger kind '{kind}'",
            did_you_mean(kind, TRIGGERS, "trigger kinds"),
            near=f'"{kind}"',
        )
        return None
    what = f"trigger '{kind}'"
    example = f"example: {rule.example}"
    ok = check_props(node, rule, what, out)
    if node.children:
        out.node(node, f"{what} takes no block", example, near="{")
        ok = False
    values = node.args[1:]
    if kind == "push":
        branches: list[str] = []
        branches_prop = node.props.get("branches")
        if isinstance(branches_prop, str):
            parts = [part.strip() for part in branches_prop.split(",") if part.strip()]
            if not parts:
                out.node(node, f"property 'branches' on {what} is empty", example, near="branches=")
                ok = False
            branches.extend(parts)
        for value in values:
            if not isinstance(value, str):
                out.node(node, f"branch globs of {what} are quoted strings, got {value!r}", example)
                ok = False
                continue
            branches.append(value)
        for glob in branches:
            problem = _branch_problem(glob)
            if problem:
                near = f'"{glob}"' if glob in values else "branches="
                out.node(
                    node, f"branch glob '{glob}' of {what} {problem}", "example: main or release/*", near
                )
                ok = False
        return Trigger("push", branches=tuple(dict.fromkeys(branches))) if ok else None
    if kind == "manual":
        if values:
            out.node(node, f"{what} takes no other values, got {len(values)}", example)
            return None
        return Trigger("manual") if ok else None
    # cron
    if not values:
        out.node(
            node,
            f"{what} needs a schedule",
            f"{example}; the fields are minute hour day-of-month month day-of-week, in UTC",
        )
        return None
    if len(values) > 1:
        out.node(
            node,
            f"{what} takes one schedule, got {len(values)} values",
            'write the five fields in one string: trigger "cron" "0 3 * * 1-5"',
        )
        return None
    expr = values[0]
    if not isinstance(expr, str):
        out.node(node, f"the schedule of {what} is a quoted string, got {expr!r}", example)
        return None
    try:
        check_cron(expr)
    except CronError as err:
        # Point at the bad field inside the string when the string is written verbatim (no escapes).
        line, col = node.line, node.col
        if out.smap is not None:
            quoted = f'"{expr}"'
            found_line, found_col = out.smap.find_on_line(node, quoted)
            if (found_line, found_col) != (node.line, node.col):
                line, col = found_line, found_col + 1 + err.index
        out.at(
            line,
            col,
            f"bad cron schedule '{expr}': {err}",
            f"the fields are minute hour day-of-month month day-of-week, in UTC, e.g. {CRON_EXAMPLE}",
        )
        ok = False
    branch = node.props.get("branch")
    if isinstance(branch, str):
        problem = _branch_problem(branch)
        if problem is None and _GLOB_CHARS.search(branch):
            out.node(
                node,
                f"{what} runs on one branch, not a glob: '{branch}'",
                'name a branch, e.g. branch="main"; without branch= it runs on the default branch',
                near="branch=",
            )
            ok = False
        elif problem:
            out.node(node, f"branch '{branch}' of {what} {problem}", example, near="branch=")
            ok = False
    if not ok:
        return None
    return Trigger("cron", cron=" ".join(expr.split()), branch=branch if isinstance(branch, str) else None)


def describe(trigger: Trigger) -> str:
    """How a duplicate trigger is named in its diagnostic."""
    if trigger.kind == "cron":
        on = f" on branch '{trigger.branch}'" if trigger.branch else ""
        return f"cron trigger '{trigger.cron}'{on}"
    if trigger.branches:
        return f"push trigger for {', '.join(trigger.branches)}"
    return f"{trigger.kind} trigger"
