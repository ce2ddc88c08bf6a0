"""Validation of one `stage` node: its children, their values and the variables they use."""

from __future__ import annotations

import re
from collections.abc import Mapping

from agent.contract.quantities import format_cpu, format_memory, parse_cpu, parse_memory
from agent.contract.types import Resources
from controller.definition.grammar import (
    STAGE_CHILDREN,
    Collector,
    check_shape,
    check_variables,
    did_you_mean,
    env_entry_problem,
    env_too_long,
    env_value,
    expanded_length,
    secret_bearing,
)
from controller.definition.kdl import RawNode
from controller.definition.limits import MAX_COMMANDS_PER_STAGE, MAX_ENV_ENTRIES, MAX_ENV_VALUE_CHARS
from controller.definition.model import Location, Stage
from controller.names import HINT as NAME_HINT
from controller.names import name_problem, shown

STAGE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}\Z")
LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9_./-]*=[^\s]*\Z")
_DURATION = re.compile(r"(?:(\d+)h)?(?:(\d+)m(?!s))?(?:(\d+)s)?(?:(\d+)ms)?\Z")
MAX_TIMEOUT_S = 7 * 24 * 3600.0
DEFAULT_TIMEOUT_S = 3600.0
MAX_RETRIES = 10
#: Bounds of a stage's `resources` (the lower ones are what Docker accepts).
MIN_CPU_MILLIS = 10
MAX_CPU_MILLIS = 1024 * 1000
MIN_MEMORY_BYTES = 6 * 2**20
MAX_MEMORY_BYTES = 64 * 2**40
MAX_PIDS = 4_194_304


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


def checked_duration(node: RawNode, where: str, out: Collector) -> float | None:
    """The duration a `timeout` or `queue-timeout` node gives, or None after reporting why not.

    Why shared: both take the same forms and limits (positive, at most 7 days), so a user who
    learnt one writes the other the same way and gets the same diagnostic.
    """
    raw = node.args[0]  # check_shape let through a string or an integer only
    parsed = parse_duration(raw) if isinstance(raw, str | int) else None
    if parsed is None or parsed <= 0 or parsed > MAX_TIMEOUT_S:
        out.node(
            node,
            f"bad duration {raw!r} for '{node.name}'{where}",
            'use a positive duration up to 7 days such as "90s", "10m", "1h30m" or "500ms"',
        )
        return None
    return parsed


def checked_resources(node: RawNode, where: str, out: Collector) -> Resources:
    """The limits a `resources` node sets (Kubernetes quantities), after reporting each bad one.

    Why bounds: a limit the engine refuses, or one no machine has, would fail every attempt of
    the stage on an agent; said at validation, it names the line instead.
    """
    example = 'resources cpu="2" memory="4Gi" pids=512'
    if not node.props:
        out.node(node, f"'resources'{where} sets nothing", f"example: {example}")
        return Resources()
    cpu = memory = pids = 0
    if "cpu" in node.props:
        raw = node.props["cpu"]
        parsed = parse_cpu(raw) if isinstance(raw, str | int | float) else None
        if parsed is None or not MIN_CPU_MILLIS <= parsed <= MAX_CPU_MILLIS:
            out.node(
                node,
                f"bad cpu {raw!r} for 'resources'{where}",
                f"give cores or millicores from {format_cpu(MIN_CPU_MILLIS)} to "
                f'{format_cpu(MAX_CPU_MILLIS)}, such as cpu="2", cpu="1.5" or cpu="500m"',
                near="cpu=",
            )
        else:
            cpu = parsed
    if "memory" in node.props:
        raw = node.props["memory"]
        parsed = parse_memory(raw) if isinstance(raw, str | int) else None
        if parsed is None or not MIN_MEMORY_BYTES <= parsed <= MAX_MEMORY_BYTES:
            out.node(
                node,
                f"bad memory {raw!r} for 'resources'{where}",
                f"give a size from {format_memory(MIN_MEMORY_BYTES)} to {format_memory(MAX_MEMORY_BYTES)}, "
                'such as memory="512Mi", memory="4Gi" or memory="2G"',
                near="memory=",
            )
        else:
            memory = parsed
    if "pids" in node.props:
        raw = node.props["pids"]
        if not isinstance(raw, int) or isinstance(raw, bool) or not 1 <= raw <= MAX_PIDS:
            out.node(
                node,
                f"bad pids {raw!r} for 'resources'{where}",
                f"give how many processes the stage may have at once, 1 to {MAX_PIDS:,}: pids=512",
                near="pids=",
            )
        else:
            pids = raw
    return Resources(cpu, memory, pids)


def _relative_path_problem(path: str) -> str | None:
    if path.startswith("/"):
        return "is absolute"
    if ".." in re.split(r"[/\\]", path):
        return "contains '..'"
    return None


def build_stage(
    node: RawNode,
    index: int,
    out: Collector,
    global_env: dict[str, str],
    global_secret_env: frozenset[str] = frozenset(),
    global_lengths: Mapping[str, int] | None = None,
) -> tuple[Stage | None, list[tuple[str, RawNode]]]:
    """Validate one `stage` node; returns the stage and its needs (with their nodes for positions).

    `global_lengths` are the expanded lengths of the top-level env values (see expanded_length).
    """
    name = node.args[0] if node.args and isinstance(node.args[0], str) else ""
    bad = name_problem(name)
    label = shown(name) if bad else f"'{name}'"
    where = f" in stage {label}"
    if bad is not None:
        out.node(node, bad.summary("the stage name"), NAME_HINT, near=bad.char)
    elif node.args and isinstance(node.args[0], str) and not STAGE_NAME.match(name):
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
        out.node(node, f"stage {label} has no block", 'give it commands: stage "test" { run "make test"; }')
    seen: dict[str, RawNode] = {}
    over_limit: set[str] = set()  # the children whose limit is reported already
    commands: list[tuple[str, RawNode]] = []
    env: list[tuple[str, str]] = []
    env_nodes: list[tuple[str, RawNode]] = []
    artifacts: list[str] = []
    labels: dict[str, str] = {}
    image: str | None = None
    timeout_s = DEFAULT_TIMEOUT_S
    retries = 0
    queue_timeout_s: float | None = None
    workdir = ""
    when_branch: str | None = None
    resources = Resources()
    for child in node.children:
        rule = STAGE_CHILDREN.get(child.name)
        if rule is None:
            hint = did_you_mean(child.name, STAGE_CHILDREN, "allowed in a stage")
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
        if not check_shape(child, rule, where, out, allow_block=False):
            continue
        args = child.args
        if child.name == "image":
            image = str(args[0]).strip()
            if not image:
                out.node(child, f"'image'{where} is empty", 'example: image "python:3.12"')
        elif child.name == "run":
            room = MAX_COMMANDS_PER_STAGE - len(commands)
            if len(args) > room and "run" not in over_limit:
                over_limit.add("run")
                out.node(
                    child,
                    f"more than {MAX_COMMANDS_PER_STAGE:,} run commands{where}",
                    'move the steps into a script in the repository: run "./ci/steps.sh"',
                )
            for arg in args[:room]:
                command = str(arg)
                if not command.strip():
                    out.node(child, f"empty 'run' command{where}", 'example: run "make test"')
                commands.append((command, child))
        elif child.name == "needs":
            needs.extend((str(arg), child) for arg in args)
        elif child.name == "env":
            if len(env) >= MAX_ENV_ENTRIES:
                if "env" not in over_limit:
                    over_limit.add("env")
                    out.node(
                        child,
                        f"more than {MAX_ENV_ENTRIES} env entries{where}",
                        "keep large configuration in a file in the repository and read it in a command",
                    )
                continue
            key, value = str(args[0]), env_value(args[1])
            bad_name = env_entry_problem(key, where)
            if bad_name:
                out.node(child, *bad_name)
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
            timeout_s = checked_duration(child, where, out) or timeout_s
        elif child.name == "queue-timeout":
            queue_timeout_s = checked_duration(child, where, out)
        elif child.name == "retries":
            count = args[0]  # check_shape let through an integer only
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
        elif child.name == "resources":
            resources = checked_resources(child, where, out)
        elif child.name == "when":
            branch = child.props.get("branch")
            if branch is None:
                out.node(child, f"'when'{where} needs a condition", 'example: when branch="main"')
            else:
                when_branch = str(branch)

    if not commands and node.has_block:
        out.node(node, f"stage {label} has no 'run' command", 'add one: run "make test"')

    # Variables. Env values are resolved in order, so they may use env declared above them;
    # commands, image and workdir see the global env plus all of the stage's own.
    declared = set(global_env)
    lengths = dict(global_lengths or {})
    for (key, _), (value, child) in zip(env, env_nodes, strict=True):
        check_variables(child, value, where, out, declared)
        declared.add(key)
        lengths[key] = expanded_length(value, lengths)
        if lengths[key] > MAX_ENV_VALUE_CHARS:
            out.node(child, *env_too_long(key, where))
    visible_env = set(global_env) | {k for k, _ in env}
    secret_env = secret_bearing(env, global_secret_env)
    for command, child in commands:
        check_variables(child, command, where, out, visible_env)
    if image is not None and "image" in seen:
        check_variables(seen["image"], image, where, out, visible_env, False, secret_env)
    if workdir and "workdir" in seen:
        check_variables(seen["workdir"], workdir, where, out, visible_env, False, secret_env)

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
        queue_timeout_s=queue_timeout_s,
        resources=resources,
    )
    return stage, needs
