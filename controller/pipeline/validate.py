"""Validation: positioned KDL nodes -> a typed `Pipeline`, reporting every problem at once.

Each problem becomes a `Diagnostic` (FILE:LINE:COL, message, hint). Validation never stops at the
first problem: users fix a file in one pass, as with a compiler.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from controller.pipeline import interpolate
from controller.pipeline.cron import EXAMPLE as CRON_EXAMPLE
from controller.pipeline.cron import CronError, check_cron
from controller.pipeline.dag import find_cycle
from controller.pipeline.kdl import RawNode, SourceMap, Value, parse
from controller.pipeline.model import (
    DEFAULT_TRIGGERS,
    TRIGGER_KINDS,
    Diagnostic,
    Location,
    Pipeline,
    PipelineInvalid,
    Stage,
    Trigger,
)

STAGE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}\Z")
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9_./-]*=[^\s]*\Z")
_DURATION = re.compile(r"(?:(\d+)h)?(?:(\d+)m(?!s))?(?:(\d+)s)?(?:(\d+)ms)?\Z")
MAX_TIMEOUT_S = 7 * 24 * 3600.0
DEFAULT_TIMEOUT_S = 3600.0
MAX_RETRIES = 10
# What git refuses in a branch name (as repository registration checks); `*?[` are glob characters.
_BRANCH_BAD_CHARS = re.compile(r"[\s~^:\\]")
_GLOB_CHARS = re.compile(r"[*?\[]")


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
    # The shape depends on the kind (the first value): see TRIGGERS and _build_trigger.
    "trigger": Rule(1, None, repeatable=True, example='trigger "cron" "0 3 * * 1-5"'),
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
    "labels": Rule(1, None, repeatable=True, example='labels "os=linux" "arch=amd64"'),
    "workdir": Rule(1, 1, example='workdir "services/api"'),
    "when": Rule(0, 0, props={"branch": (str,)}, example='when branch="main"'),
}


class _Collector:
    """Accumulates diagnostics for one file."""

    def __init__(self, filename: str, smap: SourceMap | None) -> None:
        self.filename = filename
        self.smap = smap
        self.items: list[Diagnostic] = []

    def at(self, line: int, col: int, message: str, hint: str = "") -> None:
        self.items.append(Diagnostic(self.filename, line, col, message, hint))

    def node(self, node: RawNode, message: str, hint: str = "", near: str | None = None) -> None:
        line, col = node.line, node.col
        if near is not None and self.smap is not None:
            line, col = self.smap.find_on_line(node, near)
        self.at(line, col, message, hint)


def _did_you_mean(word: str, choices: Iterable[str], what: str) -> str:
    options = sorted(choices)
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    if close:
        return f"did you mean '{close[0]}'?"
    return f"{what}: " + ", ".join(options)


def _type_name(types: tuple[type, ...]) -> str:
    names = {str: "a quoted string", int: "an integer", float: "a number", bool: "true/false"}
    return " or ".join(names.get(t, t.__name__) for t in types)


def _is_type(value: Value, types: tuple[type, ...]) -> bool:
    if isinstance(value, bool) and bool not in types:
        return False
    return isinstance(value, types)


def _check_shape(node: RawNode, rule: Rule, where: str, out: _Collector, allow_block: bool) -> bool:
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
        if not _is_type(value, rule.arg_types):
            out.node(
                node,
                f"'{node.name}'{where} takes {_type_name(rule.arg_types)}, got {value!r}",
                f"example: {rule.example}",
            )
            ok = False
            break
    for prop, value in node.props.items():
        if prop not in rule.props:
            hint = (
                _did_you_mean(prop, rule.props, "allowed properties")
                if rule.props
                else f"'{node.name}' takes no properties; example: {rule.example}"
            )
            out.node(node, f"unknown property '{prop}' on '{node.name}'{where}", hint, near=f"{prop}=")
            ok = False
        elif not _is_type(value, rule.props[prop]):
            out.node(
                node,
                f"property '{prop}' on '{node.name}'{where} takes {_type_name(rule.props[prop])}",
                f"example: {rule.example}",
                near=f"{prop}=",
            )
            ok = False
    if node.children and not allow_block:
        out.node(node, f"'{node.name}'{where} takes no block", f"example: {rule.example}", near="{")
        ok = False
    return ok


def parse_duration(text: str | int) -> float | None:
    """Seconds for '90s', '10m', '1h30m', '500ms' or a bare integer of seconds; None if malformed."""
    if isinstance(text, int):
        return float(text)
    cleaned = text.strip().replace(" ", "")
    if cleaned.isdigit():
        return float(cleaned)
    match = _DURATION.match(cleaned)
    if not cleaned or match is None or not any(match.groups()):
        return None
    hours, minutes, seconds, millis = (int(g) if g else 0 for g in match.groups())
    return hours * 3600 + minutes * 60 + seconds + millis / 1000


def _check_variables(
    node: RawNode,
    text: str,
    where: str,
    out: _Collector,
    env_names: set[str],
    allow_secrets: bool = True,
    secret_env: frozenset[str] = frozenset(),
) -> None:
    refs, problems = interpolate.scan(text)
    for problem in problems:
        snippet = text[problem.start :].split("}", 1)[0]
        out.node(node, problem.message + where, problem.hint, near=snippet)
    for ref in refs:
        raw = text[ref.start : ref.end]
        if ref.context == "env" and ref.name not in env_names:
            hint = _did_you_mean(ref.name, env_names, "declared env") if env_names else ""
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


def _relative_path_problem(path: str) -> str | None:
    if path.startswith("/"):
        return "is absolute"
    if ".." in re.split(r"[/\\]", path):
        return "contains '..'"
    return None


def _build_stage(
    node: RawNode,
    index: int,
    out: _Collector,
    global_env: dict[str, str],
    global_secret_env: frozenset[str] = frozenset(),
) -> tuple[Stage | None, list[tuple[str, RawNode]]]:
    """Validate one `stage` node; returns the stage and its needs (with their nodes for positions)."""
    name = node.args[0] if node.args and isinstance(node.args[0], str) else ""
    where = f" in stage '{name}'"
    if node.args and isinstance(node.args[0], str) and not STAGE_NAME.match(name):
        out.node(
            node,
            f"stage name '{name}' is not allowed" if name else "the stage name is empty",
            "use letters, digits, '.', '_' and '-' (start with a letter or digit, at most 63 characters)",
            near=f'"{name}"',
        )
    needs: list[tuple[str, RawNode]] = []
    needs_prop = node.props.get("needs")
    if isinstance(needs_prop, str):
        for part in needs_prop.split(","):
            if part.strip():
                needs.append((part.strip(), node))
    if not node.has_block:
        out.node(node, f"stage '{name}' has no block", 'give it commands: stage "test" { run "make test"; }')
    seen: dict[str, RawNode] = {}
    commands: list[tuple[str, RawNode]] = []
    env: list[tuple[str, str]] = []
    env_nodes: list[tuple[str, RawNode]] = []
    artifacts: list[str] = []
    labels: dict[str, str] = {}
    image: str | None = None
    timeout_s = DEFAULT_TIMEOUT_S
    retries = 0
    workdir = ""
    when_branch: str | None = None
    for child in node.children:
        rule = STAGE_CHILDREN.get(child.name)
        if rule is None:
            hint = _did_you_mean(child.name, STAGE_CHILDREN, "allowed in a stage")
            if child.name == "trigger":
                hint = "'trigger' is a top-level node: move it out of the stage block, next to 'pipeline'"
            out.node(child, f"unknown node '{child.name}'{where}", hint)
            continue
        if not rule.repeatable and child.name in seen:
            first = seen[child.name]
            out.node(
                child,
                f"'{child.name}' is given twice{where} (first on line {first.line})",
                "keep one",
            )
            continue
        seen[child.name] = child
        if not _check_shape(child, rule, where, out, allow_block=False):
            continue
        args = child.args
        if child.name == "image":
            image = str(args[0]).strip()
            if not image:
                out.node(child, f"'image'{where} is empty", 'example: image "python:3.12"')
        elif child.name == "run":
            for arg in args:
                command = str(arg)
                if not command.strip():
                    out.node(child, f"empty 'run' command{where}", 'example: run "make test"')
                commands.append((command, child))
        elif child.name == "needs":
            needs.extend((str(arg), child) for arg in args)
        elif child.name == "env":
            key, value = str(args[0]), _env_value(args[1])
            if not ENV_NAME.match(key):
                out.node(
                    child,
                    f"env name '{key}'{where} is not a valid variable name",
                    "use letters, digits and '_', not starting with a digit",
                )
            elif key.startswith("BUILDIT_"):
                out.node(child, f"env name '{key}'{where} is reserved", "BUILDIT_* names are set by BuildIt")
            env.append((key, value))
            env_nodes.append((value, child))
        elif child.name == "artifacts":
            for arg in args:
                pattern = str(arg)
                problem = _relative_path_problem(pattern)
                if problem or not pattern.strip():
                    out.node(
                        child,
                        f"artifact pattern '{pattern}'{where} {problem or 'is empty'}",
                        "artifact globs are relative to the workspace, e.g. dist/*.whl",
                        near=f'"{pattern}"',
                    )
                else:
                    artifacts.append(pattern)
        elif child.name == "timeout":
            raw = args[0]  # _check_shape let through a string or an integer only
            parsed = parse_duration(raw) if isinstance(raw, str | int) else None
            if parsed is None or parsed <= 0 or parsed > MAX_TIMEOUT_S:
                out.node(
                    child,
                    f"bad duration {args[0]!r} for 'timeout'{where}",
                    'use a positive duration up to 7 days such as "90s", "10m", "1h30m" or "500ms"',
                )
            else:
                timeout_s = parsed
        elif child.name == "retries":
            count = args[0]  # _check_shape let through an integer only
            if not isinstance(count, int) or not 0 <= count <= MAX_RETRIES:
                out.node(child, f"'retries'{where} must be between 0 and {MAX_RETRIES}, got {count}")
            else:
                retries = count
        elif child.name == "labels":
            for arg in args:
                label = str(arg)
                if not LABEL.match(label):
                    out.node(
                        child,
                        f"label '{label}'{where} is not of the form key=value",
                        'example: labels "os=linux"',
                        near=f'"{label}"',
                    )
                else:
                    key, _, value = label.partition("=")
                    labels[key] = value
        elif child.name == "workdir":
            workdir = str(args[0]).strip().strip("/") if not str(args[0]).startswith("/") else str(args[0])
            problem = _relative_path_problem(str(args[0]))
            if problem:
                out.node(
                    child,
                    f"workdir '{args[0]}'{where} {problem}",
                    'workdir is relative to the workspace, e.g. workdir "services/api"',
                )
        elif child.name == "when":
            branch = child.props.get("branch")
            if branch is None:
                out.node(child, f"'when'{where} needs a condition", 'example: when branch="main"')
            else:
                when_branch = str(branch)

    if not commands and node.has_block:
        out.node(node, f"stage '{name}' has no 'run' command", 'add one: run "make test"')

    # Variables. Env values are resolved in order, so they may use env declared above them;
    # commands, image and workdir see the global env plus all of the stage's own.
    declared = set(global_env)
    for (key, _), (value, child) in zip(env, env_nodes, strict=True):
        _check_variables(child, value, where, out, declared)
        declared.add(key)
    visible_env = set(global_env) | {k for k, _ in env}
    secret_env = secret_bearing(env, global_secret_env)
    for command, child in commands:
        _check_variables(child, command, where, out, visible_env)
    if image is not None and "image" in seen:
        _check_variables(seen["image"], image, where, out, visible_env, False, secret_env)
    if workdir and "workdir" in seen:
        _check_variables(seen["workdir"], workdir, where, out, visible_env, False, secret_env)

    if not name:
        return None, needs
    stage = Stage(
        name=name,
        index=index,
        location=Location(node.line, node.col),
        commands=tuple(c for c, _ in commands),
        image=image or None,
        needs=tuple(dict.fromkeys(n for n, _ in needs)),
        env=tuple(env),
        artifacts=tuple(artifacts),
        timeout_s=timeout_s,
        retries=retries,
        labels=labels,
        workdir=workdir,
        when_branch=when_branch,
    )
    return stage, needs


def _branch_problem(branch: str) -> str | None:
    if not branch.strip():
        return "is empty"
    if _BRANCH_BAD_CHARS.search(branch):
        return "is not a valid branch name (no spaces or ~ ^ : \\)"
    return None


def _build_trigger(node: RawNode, out: _Collector) -> Trigger | None:
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
            _did_you_mean(kind, TRIGGERS, "trigger kinds"),
            near=f'"{kind}"',
        )
        return None
    what = f"trigger '{kind}'"
    example = f"example: {rule.example}"
    ok = True
    for prop, value in node.props.items():
        if prop not in rule.props:
            hint = (
                _did_you_mean(prop, rule.props, "allowed properties")
                if rule.props
                else f"{what} takes no properties; {example}"
            )
            out.node(node, f"unknown property '{prop}' on {what}", hint, near=f"{prop}=")
            ok = False
        elif not _is_type(value, rule.props[prop]):
            out.node(
                node,
                f"property '{prop}' on {what} takes {_type_name(rule.props[prop])}",
                example,
                near=f"{prop}=",
            )
            ok = False
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


def _describe(trigger: Trigger) -> str:
    """How a duplicate trigger is named in its diagnostic."""
    if trigger.kind == "cron":
        on = f" on branch '{trigger.branch}'" if trigger.branch else ""
        return f"cron trigger '{trigger.cron}'{on}"
    if trigger.branches:
        return f"push trigger for {', '.join(trigger.branches)}"
    return f"{trigger.kind} trigger"


def _env_value(value: Value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def _validate(source: str, filename: str) -> tuple[Pipeline | None, list[Diagnostic]]:
    parsed = parse(source, filename)
    if isinstance(parsed, Diagnostic):
        return None, [parsed]
    nodes, smap = parsed
    out = _Collector(filename, smap)

    pipeline_name: str | None = None
    pipeline_node: RawNode | None = None
    global_env: dict[str, str] = {}
    stage_nodes: list[RawNode] = []
    triggers: dict[tuple[str, str | None, str | None, frozenset[str]], tuple[Trigger, RawNode]] = {}
    trigger_nodes = False
    for node in nodes:
        rule = TOP_LEVEL.get(node.name)
        if rule is None:
            hint = _did_you_mean(node.name, TOP_LEVEL, "allowed at the top level")
            if node.name in TRIGGERS or node.name in ("schedule", "on"):
                rule_example = TRIGGERS.get(node.name, TRIGGERS["cron"]).example
                hint = f"what starts a run is a trigger node: {rule_example}"
            elif node.name in STAGE_CHILDREN:
                hint = f"'{node.name}' belongs inside a stage block: stage \"name\" {{ {node.name} ...; }}"
            out.node(node, f"unknown top-level node '{node.name}'", hint)
            continue
        if node.name == "pipeline":
            if pipeline_node is not None:
                out.node(node, f"'pipeline' is given twice (first on line {pipeline_node.line})", "keep one")
                continue
            pipeline_node = node
            if _check_shape(node, rule, "", out, allow_block=False):
                pipeline_name = str(node.args[0])
                if not pipeline_name.strip():
                    out.node(node, "the pipeline name is empty", 'example: pipeline "my-app"')
        elif node.name == "env":
            if _check_shape(node, rule, " at the top level", out, allow_block=False):
                key = str(node.args[0])
                if not ENV_NAME.match(key):
                    out.node(node, f"env name '{key}' is not a valid variable name")
                elif key.startswith("BUILDIT_"):
                    out.node(node, f"env name '{key}' is reserved", "BUILDIT_* names are set by BuildIt")
                global_env[key] = _env_value(node.args[1])
        elif node.name == "trigger":
            trigger_nodes = True
            trigger = _build_trigger(node, out)
            if trigger is None:
                continue
            identity = (trigger.kind, trigger.cron, trigger.branch, frozenset(trigger.branches))
            if identity in triggers:
                first = triggers[identity][1]
                out.node(
                    node, f"{_describe(trigger)} is given twice (first on line {first.line})", "keep one"
                )
                continue
            triggers[identity] = (trigger, node)
        else:
            _check_shape(node, rule, "", out, allow_block=True)
            stage_nodes.append(node)

    if pipeline_node is None:
        out.at(1, 1, "missing 'pipeline' node", 'start the file with: pipeline "my-app"')
    declared: set[str] = set()
    for node in nodes:
        if node.name == "env" and len(node.args) == 2:
            _check_variables(node, _env_value(node.args[1]), " at the top level", out, declared)
            declared.add(str(node.args[0]))
    global_secret_env = secret_bearing(global_env.items())

    stages: list[Stage] = []
    all_needs: dict[str, list[tuple[str, RawNode]]] = {}
    first_seen: dict[str, RawNode] = {}
    for index, node in enumerate(stage_nodes):
        stage, needs = _build_stage(node, index, out, global_env, global_secret_env)
        if stage is None:
            continue
        if stage.name in first_seen:
            out.node(
                node,
                f"duplicate stage name '{stage.name}' (first on line {first_seen[stage.name].line})",
                "stage names must be unique; rename one",
                near=f'"{stage.name}"',
            )
            continue
        first_seen[stage.name] = node
        stages.append(stage)
        all_needs[stage.name] = needs
    if pipeline_node is not None and not stage_nodes:
        out.node(pipeline_node, "the pipeline has no stages", 'add one: stage "test" { run "make test"; }')

    names = set(first_seen)
    for stage_name, needs in all_needs.items():
        for need, need_node in needs:
            if need not in names:
                out.node(
                    need_node,
                    f"stage '{stage_name}' needs unknown stage '{need}'",
                    _did_you_mean(need, names - {stage_name}, "stages"),
                    near=f'"{need}"' if need_node.name == "needs" else "needs=",
                )
    graph = {s.name: [n for n in s.needs if n in names] for s in stages}
    cycle = find_cycle(graph)
    if cycle:
        node = first_seen[cycle[0]]
        out.node(
            node,
            "dependency cycle: " + " -> ".join(cycle),
            "a stage cannot need itself, directly or through others; remove one of these needs",
        )

    out.items.sort(key=lambda d: (d.line, d.col))
    if out.items or pipeline_name is None:
        return None, out.items
    return Pipeline(
        name=pipeline_name,
        stages=tuple(stages),
        env=tuple(global_env.items()),
        file=filename,
        triggers=tuple(t for t, _ in triggers.values()) if trigger_nodes else DEFAULT_TRIGGERS,
    ), []


def validate(source: str, filename: str = ".buildit.kdl") -> list[Diagnostic]:
    """Every problem in a pipeline file; an empty list means it is valid."""
    return _validate(source, filename)[1]


def load(source: str, filename: str = ".buildit.kdl") -> Pipeline:
    """Parse and validate, raising `PipelineInvalid` (with all diagnostics) when anything is wrong."""
    pipeline, diagnostics = _validate(source, filename)
    if pipeline is None:
        raise PipelineInvalid(diagnostics, source)
    return pipeline


OnStage = Callable[[Stage], None]
