"""The model's helpers that must stay cheap on big pipelines: formatting many diagnostics, stage lookup."""

from __future__ import annotations

import pytest

from controller.definition import model
from controller.definition.model import Diagnostic, Location, Pipeline, PipelineInvalid, Stage


def test_many_diagnostics_split_the_source_once() -> None:
    source = "".join(f"line {i}\n" for i in range(5_000))
    diagnostics = [Diagnostic("f.kdl", i + 1, 1, f"problem {i}") for i in range(5_000)]
    model._lines.cache_clear()
    report = PipelineInvalid(diagnostics, source).report()
    assert model._lines.cache_info().misses == 1
    assert report.count("error: problem") == 5_000
    assert "4999 | line 4998" in report


def test_format_shows_the_line_and_a_caret() -> None:
    text = Diagnostic("f.kdl", 2, 3, "bad", "fix it").format("a\nbcdef\n")
    assert text == "f.kdl:2:3: error: bad\n    2 | bcdef\n      |   ^\n  hint: fix it"


def test_stage_lookup_by_name() -> None:
    stages = tuple(Stage(f"s{i}", i, Location(i + 2, 1), ("x",)) for i in range(1_000))
    pipeline = Pipeline("p", stages)
    assert pipeline.stage("s999") is stages[999]
    assert pipeline.stage("s0") is stages[0]
    with pytest.raises(KeyError):
        pipeline.stage("ghost")
