"""Validation: positioned KDL nodes -> a typed `Pipeline`, reporting every problem at once.

Each problem becomes a `Diagnostic` (FILE:LINE:COL, message, hint). Validation never stops at the
first problem: users fix a file in one pass, as with a compiler. This module orchestrates: the node
rules live in grammar.py, stage checks in stages.py, trigger checks in triggers.py.
"""

from __future__ import annotations

from collections.abc import Callable

from controller.pipeline.dag import find_cycle
from controller.pipeline.grammar import (
    ENV_NAME,
    STAGE_CHILDREN,
    TOP_LEVEL,
    TRIGGERS,
    Collector,
    check_shape,
    check_variables,
    did_you_mean,
    env_value,
    secret_bearing,
)
from controller.pipeline.kdl import RawNode, parse
from controller.pipeline.model import (
    DEFAULT_TRIGGERS,
    Diagnostic,
    Pipeline,
    PipelineInvalid,
    Stage,
    Trigger,
)
from controller.pipeline.stages import MAX_RETRIES, build_stage, parse_duration
from controller.pipeline.triggers import build_trigger, describe

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
    global_env: dict[str, str] = {}
    stage_nodes: list[RawNode] = []
    triggers: dict[tuple[str, str | None, str | None, frozenset[str]], tuple[Trigger, RawNode]] = {}
    trigger_nodes = False
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
                if not pipeline_name.strip():
                    out.node(node, "the pipeline name is empty", 'example: pipeline "my-app"')
        elif node.name == "env":
            if check_shape(node, rule, " at the top level", out, allow_block=False):
                key = str(node.args[0])
                if not ENV_NAME.match(key):
                    out.node(node, f"env name '{key}' is not a valid variable name")
                elif key.startswith("BUILDIT_"):
                    out.node(node, f"env name '{key}' is reserved", "BUILDIT_* names are set by BuildIt")
                global_env[key] = env_value(node.args[1])
        elif node.name == "trigger":
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
        else:
            check_shape(node, rule, "", out, allow_block=True)
            stage_nodes.append(node)

    if pipeline_node is None:
        out.at(1, 1, "missing 'pipeline' node", 'start the file with: pipeline "my-app"')
    declared: set[str] = set()
    for node in nodes:
        if node.name == "env" and len(node.args) == 2:
            check_variables(node, env_value(node.args[1]), " at the top level", out, declared)
            declared.add(str(node.args[0]))
    global_secret_env = secret_bearing(global_env.items())

    stages: list[Stage] = []
    all_needs: dict[str, list[tuple[str, RawNode]]] = {}
    first_seen: dict[str, RawNode] = {}
    for index, node in enumerate(stage_nodes):
        stage, needs = build_stage(node, index, out, global_env, global_secret_env)
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
                    did_you_mean(need, names - {stage_name}, "stages"),
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
