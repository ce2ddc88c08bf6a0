"""Validation: positioned KDL nodes -> a typed `Pipeline`, reporting every problem at once.

Each problem becomes a `Diagnostic` (FILE:LINE:COL, message, hint). Validation never stops at the
first problem: users fix a file in one pass, as with a compiler. This module orchestrates: the node
rules live in grammar.py, stage checks in stages.py, trigger checks in triggers.py.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable

from controller.definition.dag import find_cycle
from controller.definition.grammar import (
    LISTED_CHOICES,
    STAGE_CHILDREN,
    TOP_LEVEL,
    TRIGGERS,
    Collector,
    check_shape,
    check_variables,
    did_you_mean,
    env_entry_problem,
    env_too_long,
    env_value,
    expanded_length,
    listing,
    secret_bearing,
)
from controller.definition.kdl import RawNode, parse
from controller.definition.limits import (
    MAX_ENV_ENTRIES,
    MAX_ENV_VALUE_CHARS,
    MAX_NAME_CHARS,
    MAX_NEEDS,
    MAX_STAGES,
    MAX_TRIGGERS,
)
from controller.definition.model import (
    DEFAULT_TRIGGERS,
    Diagnostic,
    Pipeline,
    PipelineInvalid,
    Stage,
    Trigger,
)
from controller.definition.stages import MAX_RETRIES, build_stage, checked_duration, parse_duration
from controller.definition.triggers import build_trigger, describe
from controller.names import HINT as NAME_HINT
from controller.names import name_problem

# Importable from here as before the split.
__all__ = ["MAX_RETRIES", "OnStage", "load", "parse_duration", "secret_bearing", "validate"]


def _validate(source: str, filename: str) -> tuple[Pipeline | None, list[Diagnostic]]:
    parsed = parse(source, filename)
    if isinstance(parsed, Diagnostic):
        return None, [parsed]
    nodes, smap = parsed
    out = Collector(filename, smap)

    pipeline_name: str | None = None
    pipeline_node: RawNode | None = None
    queue_timeout_node: RawNode | None = None
    queue_timeout_s: float | None = None
    global_env: dict[str, str] = {}
    stage_nodes: list[RawNode] = []
    triggers: dict[tuple[str, str | None, str | None, frozenset[str]], tuple[Trigger, RawNode]] = {}
    trigger_nodes = False
    env_nodes: list[RawNode] = []
    too_many_stages = False
    trigger_count = 0
    for node in nodes:
        rule = TOP_LEVEL.get(node.name)
        if rule is None:
            hint = did_you_mean(node.name, TOP_LEVEL, "allowed at the top level")
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
            if check_shape(node, rule, "", out, allow_block=False):
                pipeline_name = str(node.args[0])
                bad = name_problem(pipeline_name)
                if bad is not None:
                    out.node(node, bad.summary("the pipeline name"), NAME_HINT, near=bad.char)
                elif not pipeline_name.strip():
                    out.node(node, "the pipeline name is empty", 'example: pipeline "my-app"')
                elif len(pipeline_name) > MAX_NAME_CHARS:
                    out.node(
                        node,
                        f"the pipeline name is {len(pipeline_name):,} characters; "
                        f"the limit is {MAX_NAME_CHARS}",
                        "use a shorter name",
                    )
        elif node.name == "queue-timeout":
            if queue_timeout_node is not None:
                line = queue_timeout_node.line
                out.node(node, f"'queue-timeout' is given twice (first on line {line})", "keep one")
                continue
            queue_timeout_node = node
            if check_shape(node, rule, " at the top level", out, allow_block=False):
                queue_timeout_s = checked_duration(node, " at the top level", out)
        elif node.name == "env":
            if len(env_nodes) == MAX_ENV_ENTRIES:
                out.node(
                    node,
                    f"more than {MAX_ENV_ENTRIES} env entries at the top level",
                    "top-level env is copied into every stage: declare values in the stages that "
                    "use them, or keep them in a file in the repository",
                )
            if len(env_nodes) >= MAX_ENV_ENTRIES:
                env_nodes.append(node)  # counted, not used: the file is invalid already
                continue
            env_nodes.append(node)
            if check_shape(node, rule, " at the top level", out, allow_block=False):
                key = str(node.args[0])
                problem = env_entry_problem(key, "")
                if problem:
                    out.node(node, *problem)
                global_env[key] = env_value(node.args[1])
        elif node.name == "trigger":
            trigger_count += 1
            if trigger_count > MAX_TRIGGERS:
                if trigger_count == MAX_TRIGGERS + 1:
                    out.node(
                        node,
                        f"more than {MAX_TRIGGERS} triggers in one pipeline",
                        'one push trigger takes several branch globs (branches="main,release/*"); '
                        "a cron schedule can name several hours or days in one expression",
                    )
                continue
            trigger_nodes = True
            trigger = build_trigger(node, out)
            if trigger is None:
                continue
            identity = (trigger.kind, trigger.cron, trigger.branch, frozenset(trigger.branches))
            if identity in triggers:
                first = triggers[identity][1]
                out.node(node, f"{describe(trigger)} is given twice (first on line {first.line})", "keep one")
                continue
            triggers[identity] = (trigger, node)
        elif len(stage_nodes) < MAX_STAGES:
            check_shape(node, rule, "", out, allow_block=True)
            stage_nodes.append(node)
        elif not too_many_stages:
            too_many_stages = True
            out.node(
                node,
                f"more than {MAX_STAGES:,} stages in one pipeline; this is stage {MAX_STAGES + 1:,}",
                "merge small stages (one stage may run several commands), or split the work into "
                "several pipelines",
            )

    if pipeline_node is None:
        out.at(1, 1, "missing 'pipeline' node", 'start the file with: pipeline "my-app"')
    global_lengths = _check_top_env(env_nodes[:MAX_ENV_ENTRIES], out)
    global_secret_env = secret_bearing(global_env.items())

    stages: list[Stage] = []
    all_needs: dict[str, list[tuple[str, RawNode]]] = {}
    first_seen: dict[str, RawNode] = {}
    for index, node in enumerate(stage_nodes):
        stage, needs = build_stage(node, index, out, global_env, global_secret_env, global_lengths)
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
    _check_needs(all_needs, names, out)
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
        queue_timeout_s=queue_timeout_s,
    ), []


def _check_top_env(env_nodes: list[RawNode], out: Collector) -> dict[str, int]:
    """Check the variables of top-level env values, in order; returns their expanded lengths.

    Each value may use the entries above it. The lengths let stages check their own values.
    """
    declared: set[str] = set()
    lengths: dict[str, int] = {}
    for node in env_nodes:
        if len(node.args) == 2:
            key, value = str(node.args[0]), env_value(node.args[1])
            check_variables(node, value, " at the top level", out, declared)
            declared.add(key)
            lengths[key] = expanded_length(value, lengths)
            if lengths[key] > MAX_ENV_VALUE_CHARS:
                out.node(node, *env_too_long(key, " at the top level"))
    return lengths


def _check_needs(all_needs: dict[str, list[tuple[str, RawNode]]], names: set[str], out: Collector) -> None:
    """Report needs naming unknown stages, and the first need over MAX_NEEDS (then stop counting)."""
    need_hint = _NeedHints(names)
    written = ((stage, need, node) for stage, needs in all_needs.items() for need, node in needs)
    for edges, (stage_name, need, need_node) in enumerate(written, start=1):
        near = f'"{need}"' if need_node.name == "needs" else "needs="
        if edges > MAX_NEEDS:
            out.node(
                need_node,
                f"more than {MAX_NEEDS:,} needs in one pipeline (each name in needs counts)",
                "let many stages need one gathering stage instead of each needing them all",
                near=near,
            )
            return
        if need not in names:
            out.node(
                need_node,
                f"stage '{stage_name}' needs unknown stage '{need}'",
                need_hint(need, stage_name),
                near=near,
            )


class _NeedHints:
    """Did-you-mean hints for unknown needs, affordable however many stages and needs there are.

    One search over the stage names per distinct unknown name, and at most MAX_SEARCHES of them:
    a file with thousands of misspelt needs gets its first hints, not minutes of string matching.
    """

    MAX_SEARCHES = 10

    def __init__(self, names: set[str]) -> None:
        self.names = sorted(names)
        self.known = names
        self.close: dict[str, list[str]] = {}

    def __call__(self, need: str, stage_name: str) -> str:
        """The hint for `stage_name` needing the unknown `need`: never the stage itself."""
        if need not in self.close:
            searched = len(self.close) < self.MAX_SEARCHES
            # Two candidates, so that one is left when the closest is the stage itself.
            self.close[need] = difflib.get_close_matches(need, self.names, n=2) if searched else []
        close = [name for name in self.close[need] if name != stage_name]
        if close:
            return f"did you mean '{close[0]}'?"
        # Only the first few names are listed: never copy all of them for each unknown need.
        first = [name for name in self.names[: LISTED_CHOICES + 1] if name != stage_name]
        return listing(first, "stages", total=len(self.names) - (stage_name in self.known))


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
