"""Validation grammar: the shape rules of each node, the diagnostic collector, shared value checks.

`Rule` says what a node accepts; `check_shape` enforces it. The collector gathers every problem of a
file so validation never stops at the first. Used by stages.py, triggers.py and validate.py.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from controller.definition import interpolate
from controller.definition.kdl import RawNode, SourceMap, Value
from controller.definition.limits import MAX_ENV_VALUE_CHARS, MAX_NAME_CHARS
from controller.definition.model import Diagnostic

ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


@dataclass(frozen=True)
class Rule:
    """What a node accepts: argument count and types, properties, whether it may repeat."""

    min_args: int
    max_args: int | None
    arg_types: tuple[type, ...] = (str,)
    props: dict[str, tuple[type, ...]] = field(default_factory=dict)
    repeatable: bool = False
    example: str = ""


TOP_LEVEL: dict[str, Rule] = {
    "pipeline": Rule(1, 1, example='pipeline "my-app"'),
    "stage": Rule(
        1, 1, props={"needs": (str,)}, repeatable=True, example='stage "test" { run "make test"; }'
    ),
    "env": Rule(2, 2, (str, int, float, bool), repeatable=True, example='env "LANG" "C.UTF-8"'),
    # The shape depends on the kind (the first value): see TRIGGERS and build_trigger.
    "trigger": Rule(1, None, repeatable=True, example='trigger "cron" "0 3 * * 1-5"'),
    # How long a stage may wait for an agent before it ends in `error` (every stage's default).
    "queue-timeout": Rule(1, 1, (str, int), example='queue-timeout "30m"'),
}

# Per trigger kind: the properties it takes, and an example for hints.
TRIGGERS: dict[str, Rule] = {
    "push": Rule(0, None, props={"branches": (str,)}, example='trigger "push" branches="main,release/*"'),
    "cron": Rule(1, 1, props={"branch": (str,)}, example='trigger "cron" "0 3 * * 1-5" branch="main"'),
    "manual": Rule(0, 0, example='trigger "manual"'),
}

STAGE_CHILDREN: dict[str, Rule] = {
    "image": Rule(1, 1, example='image "python:3.12"'),
    "run": Rule(1, None, repeatable=True, example='run "pytest -q"'),
    "needs": Rule(1, None, repeatable=True, example='needs "build" "lint"'),
    "env": Rule(2, 2, (str, int, float, bool), repeatable=True, example='env "GIT_SHA" "${git.sha}"'),
    "artifacts": Rule(1, None, repeatable=True, example='artifacts "dist/*.whl"'),
    "timeout": Rule(1, 1, (str, int), example='timeout "10m"'),
    "retries": Rule(1, 1, (int,), example="retries 2"),
    "queue-timeout": Rule(1, 1, (str, int), example='queue-timeout "10m"'),
    "labels": Rule(1, None, repeatable=True, example='labels "os=linux" "arch=amd64"'),
    "workdir": Rule(1, 1, example='workdir "services/api"'),
    "when": Rule(0, 0, props={"branch": (str,)}, example='when branch="main"'),
    "resources": Rule(
        0,
        0,
        props={"cpu": (str, int, float), "memory": (str, int), "pids": (int,)},
        example='resources cpu="2" memory="4Gi"',
    ),
}


class Collector:
    """Accumulates diagnostics for one file."""

    def __init__(self, filename: str, smap: SourceMap | None) -> None:
        self.filename = filename
        self.smap = smap
        self.items: list[Diagnostic] = []

    def at(self, line: int, col: int, message: str, hint: str = "") -> None:
        """Record a problem at an explicit position (for places that are not a node's start)."""
        self.items.append(Diagnostic(self.filename, line, col, message, hint))

    def node(self, node: RawNode, message: str, hint: str = "", near: str | None = None) -> None:
        """Record a problem at a node, or at `near` on its first line so the caret hits the culprit."""
        line, col = node.line, node.col
        if near is not None and self.smap is not None:
            line, col = self.smap.find_on_line(node, near)
        self.at(line, col, message, hint)


def did_you_mean(word: str, choices: Iterable[str], what: str) -> str:
    """A hint for a misspelt name: the closest choice, else the list of what is allowed."""
    options = sorted(choices)
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    if close:
        return f"did you mean '{close[0]}'?"
    return listing(options, what)


# How many names a hint lists before "and N more": a hint names choices, it is not an index.
LISTED_CHOICES = 20


def listing(options: list[str], what: str, total: int | None = None) -> str:
    """`what: a, b, c`, cut after LISTED_CHOICES names so a hint stays one readable line.

    `total` is how many options there are when `options` holds only the first few of them.
    """
    shown = options[:LISTED_CHOICES]
    more = (len(options) if total is None else total) - len(shown)
    return f"{what}: {', '.join(shown)}" + (f" and {more:,} more" if more > 0 else "")


def expanded_length(text: str, lengths: Mapping[str, int]) -> int:
    """How long an env value becomes once its `${env.NAME}` are substituted, without substituting.

    `lengths` holds the expanded length of each env entry declared so far; the values of the other
    contexts (git, run, ...) are known only when a run is planned, so they count as empty here
    (plan.py checks the real values). Capped just above the limit: the sum can grow exponentially.
    """
    total = len(text)
    for ref in interpolate.references(text):
        total -= ref.end - ref.start
        if ref.context == "env":
            total += lengths.get(ref.name, 0)
    return min(total, MAX_ENV_VALUE_CHARS + 1)


def env_entry_problem(key: str, where: str) -> tuple[str, str] | None:
    """Why an env name cannot be used (message, hint), else None: shared by both env scopes."""
    if len(key) > MAX_NAME_CHARS:
        return (
            f"env name '{key[:40]}...'{where} is {len(key):,} characters; the limit is {MAX_NAME_CHARS}",
            "use a shorter name",
        )
    if not ENV_NAME.match(key):
        return (
            f"env name '{key}'{where} is not a valid variable name",
            "use letters, digits and '_', not starting with a digit",
        )
    if key.startswith("BUILDIT_"):
        return f"env name '{key}'{where} is reserved", "BUILDIT_* names are set by BuildIt"
    return None


def env_too_long(key: str, where: str) -> tuple[str, str]:
    """The diagnostic (message, hint) for an env value longer than the limit once expanded."""
    return (
        f"env '{key}'{where} is longer than {MAX_ENV_VALUE_CHARS:,} characters once its "
        "${env.*} variables are substituted",
        "each use of another env variable copies its value: do not build a value by repeating "
        "others; keep large data in files in the repository",
    )


def type_name(types: tuple[type, ...]) -> str:
    """The types a value may have, in the words of a KDL user rather than Python's."""
    names = {str: "a quoted string", int: "an integer", float: "a number", bool: "true/false"}
    return " or ".join(names.get(t, t.__name__) for t in types)


def is_type(value: Value, types: tuple[type, ...]) -> bool:
    """isinstance, except that true/false is not an integer unless booleans are allowed."""
    if isinstance(value, bool) and bool not in types:
        return False
    return isinstance(value, types)


def check_shape(node: RawNode, rule: Rule, where: str, out: Collector, allow_block: bool) -> bool:
    """Check argument count/types and properties; True when the node is usable."""
    ok = True
    count = len(node.args)
    if count < rule.min_args or (rule.max_args is not None and count > rule.max_args):
        if rule.max_args is None:
            want = f"at least {rule.min_args} value{'s' if rule.min_args != 1 else ''}"
        elif rule.min_args == rule.max_args:
            want = f"exactly {rule.min_args} value{'s' if rule.min_args != 1 else ''}"
        else:
            want = f"{rule.min_args} to {rule.max_args} values"
        out.node(node, f"'{node.name}'{where} takes {want}, got {count}", f"example: {rule.example}")
        ok = False
    for value in node.args:
        if not is_type(value, rule.arg_types):
            out.node(
                node,
                f"'{node.name}'{where} takes {type_name(rule.arg_types)}, got {value!r}",
                f"example: {rule.example}",
            )
            ok = False
            break
    if not check_props(node, rule, f"'{node.name}'{where}", out, who=f"'{node.name}'"):
        ok = False
    if node.children and not allow_block:
        out.node(node, f"'{node.name}'{where} takes no block", f"example: {rule.example}", near="{")
        ok = False
    return ok


def check_props(node: RawNode, rule: Rule, what: str, out: Collector, who: str | None = None) -> bool:
    """Check a node's properties against its rule.

    `what` names the node where it stands ("'image' in stage 'build'"), `who` what it is ("'image'";
    default `what`).
    """
    ok = True
    for prop, value in node.props.items():
        if prop not in rule.props:
            hint = (
                did_you_mean(prop, rule.props, "allowed properties")
                if rule.props
                else f"{who or what} takes no properties; example: {rule.example}"
            )
            out.node(node, f"unknown property '{prop}' on {what}", hint, near=f"{prop}=")
            ok = False
        elif not is_type(value, rule.props[prop]):
            out.node(
                node,
                f"property '{prop}' on {what} takes {type_name(rule.props[prop])}",
                f"example: {rule.example}",
                near=f"{prop}=",
            )
            ok = False
    return ok


def check_variables(
    node: RawNode,
    text: str,
    where: str,
    out: Collector,
    env_names: set[str],
    allow_secrets: bool = True,
    secret_env: frozenset[str] = frozenset(),
) -> None:
    """Report malformed `${...}`, env names not declared, and secrets where they would be shown."""
    refs, problems = interpolate.scan(text)
    for problem in problems:
        snippet = text[problem.start :].split("}", 1)[0]
        out.node(node, problem.message + where, problem.hint, near=snippet)
    for ref in refs:
        raw = text[ref.start : ref.end]
        if ref.context == "env" and ref.name not in env_names:
            hint = did_you_mean(ref.name, env_names, "declared env") if env_names else ""
            out.node(
                node,
                f"'{raw}'{where} names an env variable that is not declared",
                hint or f'declare it with env "{ref.name}" "value" in the stage or at the top level',
                near=raw,
            )
        carries_secret = ref.context == "secrets" or (ref.context == "env" and ref.name in secret_env)
        if carries_secret and not allow_secrets:
            via = f" (env '{ref.name}' holds a secret)" if ref.context == "env" else ""
            out.node(
                node,
                f"secrets cannot be used in '{node.name}'{where}{via}: its value would appear in logs",
                "pass secrets to commands through env or run",
                near=raw,
            )


def secret_bearing(
    entries: Iterable[tuple[str, str]], initial: frozenset[str] = frozenset()
) -> frozenset[str]:
    """Env names whose value carries a secret, directly or through another env entry (in order)."""
    found = set(initial)
    for key, value in entries:
        refs = interpolate.references(value)
        if any(r.context == "secrets" or (r.context == "env" and r.name in found) for r in refs):
            found.add(key)
        else:
            found.discard(key)
    return frozenset(found)


def env_value(value: Value) -> str:
    """An env value as the process will see it: KDL true/false become `true`/`false`."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)
