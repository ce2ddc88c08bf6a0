"""build_stage() on its own: one stage node -> a Stage and its needs, problems to the collector."""

from __future__ import annotations

from controller.definition.grammar import Collector
from controller.definition.kdl import RawNode, parse
from controller.definition.model import Location
from controller.definition.stages import DEFAULT_TIMEOUT_S, build_stage, parse_duration


def stage_node(source: str) -> tuple[RawNode, Collector]:
    parsed = parse(source, "f.kdl")
    assert isinstance(parsed, tuple), parsed
    nodes, smap = parsed
    return nodes[0], Collector("f.kdl", smap)


def test_a_stage_and_its_needs_with_the_nodes_they_were_written_on() -> None:
    node, out = stage_node('stage "b" needs="a" {\n    run "make"\n    needs "c" "a"\n}\n')
    stage, needs = build_stage(node, 3, out, {})
    assert out.items == []
    assert stage is not None
    assert (stage.name, stage.index, stage.location) == ("b", 3, Location(1, 1))
    assert stage.needs == ("a", "c") and stage.timeout_s == DEFAULT_TIMEOUT_S
    written = [(name, n.name, n.line) for name, n in needs]
    assert written == [("a", "stage", 1), ("c", "needs", 3), ("a", "needs", 3)]


def test_env_values_see_the_pipeline_level_lengths() -> None:
    node, out = stage_node('stage "s" {\n    run "x"\n    env "B" "${env.A}${env.A}"\n}\n')
    build_stage(node, 0, out, {"A": "a"}, global_lengths={"A": 40_000})
    assert [(d.line, d.message.split(" is ")[0]) for d in out.items] == [(3, "env 'B' in stage 's'")]
    node, out = stage_node('stage "s" {\n    run "x"\n    env "B" "${env.A}${env.A}"\n}\n')
    build_stage(node, 0, out, {"A": "a"}, global_lengths={"A": 30_000})
    assert out.items == []


def test_a_nameless_stage_gives_no_stage_but_its_problems() -> None:
    node, out = stage_node('stage 1 { run "x"; }\n')
    stage, needs = build_stage(node, 0, out, {})
    assert stage is None and needs == []


def test_parse_duration_is_importable_from_both_places() -> None:
    from controller.definition.validate import parse_duration as from_validate

    assert from_validate is parse_duration
    assert parse_duration("1h30m") == 5400.0
