"""validate()/load(): every problem at once, as FILE:LINE:COL diagnostics with hints."""

from __future__ import annotations

from typing import Any

import pytest

from agent.contract.types import Resources
from controller.definition.model import (
    DEFAULT_QUEUE_TIMEOUT_S,
    Diagnostic,
    Location,
    Pipeline,
    PipelineInvalid,
)
from controller.definition.validate import MAX_RETRIES, parse_duration, validate
from controller.definition.validate import load as load_pipeline


def where(diagnostics: list[Diagnostic]) -> list[tuple[int, int]]:
    return [(d.line, d.col) for d in diagnostics]


def only(source: str) -> Diagnostic:
    diagnostics = validate(source, "f.kdl")
    assert len(diagnostics) == 1, "\n".join(d.format() for d in diagnostics)
    return diagnostics[0]


def stage_file(body: str, name: str = "s") -> str:
    """A pipeline with one stage whose block is `body` (lines indented by 4); stage on line 2."""
    inner = "".join(f"    {line}\n" for line in body.splitlines())
    return f'pipeline "p"\nstage "{name}" {{\n{inner}}}\n'


# --- valid files -------------------------------------------------------------------------------

FULL = """\
pipeline "demo"
env "LANG" "C.UTF-8"
env "LEVEL" 3

stage "lint" { run "ruff check ."; }
stage "test" { run "pytest -q"; }
stage "build" needs="lint" {
    needs "test" "lint"
    image "python:3.12-slim"
    run "pip install -e ."
    run "make dist" "ls dist"
    env "GIT_SHA" "${git.sha}"
    env "N" 3
    env "FLAG" true
    artifacts "dist/*.whl" "reports/"
    artifacts "coverage.xml"
    timeout "1h30m"
    retries 2
    labels "os=linux" "arch=amd64"
    labels "gpu=true"
    workdir "services/api/"
    when branch="release/*"
}
"""


def test_full_featured_stage_maps_every_field() -> None:
    assert validate(FULL) == []
    pipeline = load_pipeline(FULL, "ci.kdl")
    assert isinstance(pipeline, Pipeline)
    assert pipeline.name == "demo"
    assert pipeline.file == "ci.kdl"
    assert pipeline.env == (("LANG", "C.UTF-8"), ("LEVEL", "3"))
    assert [s.name for s in pipeline.stages] == ["lint", "test", "build"]
    assert [s.index for s in pipeline.stages] == [0, 1, 2]

    build = pipeline.stage("build")
    assert build.location == Location(7, 1)
    assert build.image == "python:3.12-slim"
    assert build.commands == ("pip install -e .", "make dist", "ls dist")
    # Property and child forms combine, first mention first, duplicates dropped.
    assert build.needs == ("lint", "test")
    # Env values stay as written (interpolation happens in plan); non-strings become strings.
    assert build.env == (("GIT_SHA", "${git.sha}"), ("N", "3"), ("FLAG", "true"))
    assert build.artifacts == ("dist/*.whl", "reports/", "coverage.xml")
    assert build.timeout_s == 5400.0
    assert build.retries == 2
    assert build.labels == {"os": "linux", "arch": "amd64", "gpu": "true"}
    assert build.workdir == "services/api"  # trailing slash trimmed
    assert build.when_branch == "release/*"


def test_defaults_for_a_minimal_stage() -> None:
    stage = load_pipeline('pipeline "p"\nstage "a" { run "x"; }\n').stage("a")
    assert stage.commands == ("x",)
    assert stage.image is None
    assert stage.needs == ()
    assert stage.env == ()
    assert stage.artifacts == ()
    assert stage.timeout_s == 3600.0
    assert stage.retries == 0
    assert stage.labels == {}
    assert stage.workdir == ""
    assert stage.when_branch is None
    assert stage.location == Location(2, 1)


def test_pipeline_stage_lookup_raises_keyerror_for_unknown() -> None:
    pipeline = load_pipeline('pipeline "p"\nstage "a" { run "x"; }\n')
    with pytest.raises(KeyError):
        pipeline.stage("nope")


def test_needs_property_form() -> None:
    pipeline = load_pipeline('pipeline "p"\nstage "a" { run "x"; }\nstage "b" needs="a" { run "y"; }\n')
    assert pipeline.stage("b").needs == ("a",)


def test_needs_child_form_with_several_values() -> None:
    source = (
        'pipeline "p"\nstage "a" { run "x"; }\nstage "b" { run "x"; }\n'
        'stage "c" {\n    needs "a" "b"\n    run "z"\n}\n'
    )
    assert load_pipeline(source).stage("c").needs == ("a", "b")


def test_needs_comma_form_trims_spaces_and_skips_empty_parts() -> None:
    source = (
        'pipeline "p"\nstage "a" { run "x"; }\nstage "b" { run "x"; }\nstage "c" { run "x"; }\n'
        'stage "d" needs="a, b,,c" { run "y"; }\n'
    )
    assert load_pipeline(source).stage("d").needs == ("a", "b", "c")


def test_needs_property_and_repeated_children_combine() -> None:
    source = (
        'pipeline "p"\nstage "a" { run "x"; }\nstage "b" { run "x"; }\nstage "c" { run "x"; }\n'
        'stage "d" needs="c" {\n    needs "a"\n    needs "b" "c"\n    run "y"\n}\n'
    )
    assert load_pipeline(source).stage("d").needs == ("c", "a", "b")


def test_needs_may_point_forward_in_the_file() -> None:
    pipeline = load_pipeline('pipeline "p"\nstage "b" needs="a" { run "y"; }\nstage "a" { run "x"; }\n')
    assert pipeline.stage("b").needs == ("a",)


def test_top_level_env_values_are_usable_in_stages() -> None:
    source = 'pipeline "p"\nenv "REGISTRY" "r.example"\nstage "a" { run "push ${env.REGISTRY}"; }\n'
    assert validate(source) == []


def test_stage_env_can_reference_git_and_secrets() -> None:
    source = stage_file(
        'env "TOKEN" "${secrets.TOKEN}"\nenv "SHA" "${git.short_sha}"\nrun "deploy ${env.TOKEN}"'
    )
    assert validate(source) == []


def test_validate_on_valid_file_returns_empty_list() -> None:
    assert validate(FULL, "x.kdl") == []


# --- all problems at once ----------------------------------------------------------------------

FIVE_PROBLEMS = """\
pipeline "p"
stage "build" needs="tset" {
    imgae "python:3.12"
    run "make"
    timeout "forever"
}
stage "test" {
    run "pytest ${git.sah}"
    retries 42
}
"""


def test_all_problems_are_reported_in_one_call_sorted_by_position() -> None:
    diagnostics = validate(FIVE_PROBLEMS, "ci.kdl")
    assert [(d.line, d.col) for d in diagnostics] == [(2, 15), (3, 5), (5, 5), (8, 17), (9, 5)]
    assert all(d.file == "ci.kdl" and d.severity == "error" for d in diagnostics)
    need, node, duration, variable, retries = diagnostics
    assert need.message == "stage 'build' needs unknown stage 'tset'"
    assert need.hint == "did you mean 'test'?"
    assert node.message == "unknown node 'imgae' in stage 'build'"
    assert node.hint == "did you mean 'image'?"
    assert duration.message == "bad duration 'forever' for 'timeout' in stage 'build'"
    assert "1h30m" in duration.hint
    assert variable.message == "unknown variable '${git.sah}' in stage 'test'"
    assert variable.hint == "did you mean 'sha'?"
    assert retries.message == f"'retries' in stage 'test' must be between 0 and {MAX_RETRIES}, got 42"


def test_load_raises_pipeline_invalid_with_every_diagnostic_and_the_source() -> None:
    with pytest.raises(PipelineInvalid) as caught:
        load_pipeline(FIVE_PROBLEMS, "ci.kdl")
    exc = caught.value
    assert exc.diagnostics == validate(FIVE_PROBLEMS, "ci.kdl")
    assert exc.source == FIVE_PROBLEMS
    report = exc.report()
    assert "ci.kdl:2:15: error: stage 'build' needs unknown stage 'tset'" in report
    assert '    8 |     run "pytest ${git.sah}"' in report
    assert str(exc).count("ci.kdl:") == 5


# --- syntax errors -----------------------------------------------------------------------------


def test_syntax_error_is_the_single_diagnostic() -> None:
    diag = only('pipeline "p"\nstage "a" { run "x" }\nstage "b" { imgae "y"; }\n')
    assert (diag.line, diag.col) == (2, 21)
    assert diag.message.startswith("KDL syntax error:")
    assert 'stage "a" { run "x"; }' in diag.hint


def test_load_raises_on_syntax_error() -> None:
    with pytest.raises(PipelineInvalid) as caught:
        load_pipeline('stage "a" { run "x" }\n')
    assert len(caught.value.diagnostics) == 1
    assert 'write: stage "a" { run "x"; }' in caught.value.report()


# --- top level ---------------------------------------------------------------------------------


def test_missing_pipeline_node() -> None:
    diag = only('stage "a" {\n    run "x"\n}\n')
    assert (diag.line, diag.col) == (1, 1)
    assert diag.message == "missing 'pipeline' node"
    assert 'pipeline "my-app"' in diag.hint


def test_empty_file_reports_missing_pipeline() -> None:
    assert [d.message for d in validate("")] == ["missing 'pipeline' node"]


def test_pipeline_without_stages() -> None:
    diag = only('pipeline "p"\n')
    assert (diag.line, diag.col) == (1, 1)
    assert diag.message == "the pipeline has no stages"


def test_pipeline_given_twice() -> None:
    diag = only('pipeline "p"\npipeline "q"\nstage "a" { run "x"; }\n')
    assert (diag.line, diag.col) == (2, 1)
    assert diag.message == "'pipeline' is given twice (first on line 1)"


def test_pipeline_name_shape_problems() -> None:
    assert only('pipeline ""\nstage "a" { run "x"; }\n').message == "the pipeline name is empty"
    assert only('pipeline "p" "q"\nstage "a" { run "x"; }\n').message == (
        "'pipeline' takes exactly 1 value, got 2"
    )
    assert only('pipeline 5\nstage "a" { run "x"; }\n').message == "'pipeline' takes a quoted string, got 5"
    block = only('pipeline "p" { x; }\nstage "a" { run "x"; }\n')
    assert (block.line, block.col, block.message) == (1, 14, "'pipeline' takes no block")


def test_unknown_top_level_node_suggests() -> None:
    diag = only('pipeline "p"\nstag "x" { run "y"; }\nstage "a" { run "x"; }\n')
    assert (diag.line, diag.col) == (2, 1)
    assert diag.message == "unknown top-level node 'stag'"
    assert diag.hint == "did you mean 'stage'?"


def test_unknown_top_level_node_without_close_match_lists_allowed() -> None:
    diag = only('pipeline "p"\nzzz\nstage "a" { run "x"; }\n')
    assert diag.hint == "allowed at the top level: env, pipeline, queue-timeout, stage, trigger"


def test_stage_child_at_top_level_says_it_belongs_in_a_stage() -> None:
    diag = only('pipeline "p"\nimage "x"\nstage "a" { run "x"; }\n')
    assert diag.message == "unknown top-level node 'image'"
    assert "belongs inside a stage block" in diag.hint


def test_top_level_env_problems() -> None:
    source = 'pipeline "p"\nenv "BUILDIT_X" "1"\nenv "1BAD" "1"\nenv "ONE"\nstage "a" { run "x"; }\n'
    diagnostics = validate(source)
    assert where(diagnostics) == [(2, 1), (3, 1), (4, 1)]
    assert diagnostics[0].message == "env name 'BUILDIT_X' is reserved"
    assert diagnostics[1].message == "env name '1BAD' is not a valid variable name"
    assert diagnostics[2].message == "'env' at the top level takes exactly 2 values, got 1"


def test_top_level_env_may_reference_other_top_level_env_but_not_stage_env() -> None:
    source = (
        'pipeline "p"\nenv "A" "x"\nenv "B" "${env.A}-${env.S}"\n'
        'stage "a" {\n    env "S" "1"\n    run "x"\n}\n'
    )
    diag = only(source)
    assert (diag.line, diag.col) == (3, 19)
    assert diag.message == "'${env.S}' at the top level names an env variable that is not declared"


# --- stages ------------------------------------------------------------------------------------


def test_duplicate_stage_points_at_the_second_name() -> None:
    diag = only('pipeline "p"\nstage "a" { run "x"; }\nstage "a" { run "y"; }\n')
    assert (diag.line, diag.col) == (3, 7)
    assert diag.message == "duplicate stage name 'a' (first on line 2)"


def test_stage_without_block() -> None:
    diag = only('pipeline "p"\nstage "a" { run "x"; }\nstage "b"\n')
    assert (diag.line, diag.col) == (3, 1)
    assert diag.message == "stage 'b' has no block"


def test_stage_without_run() -> None:
    diag = only(stage_file('image "x"', name="a"))
    assert (diag.line, diag.col) == (2, 1)
    assert diag.message == "stage 'a' has no 'run' command"
    assert 'run "make test"' in diag.hint


def test_empty_block_is_a_stage_without_run() -> None:
    assert only('pipeline "p"\nstage "a" {}\n').message == "stage 'a' has no 'run' command"


def test_empty_run_command() -> None:
    diag = only(stage_file('run ""'))
    assert (diag.line, diag.col) == (3, 5)
    assert diag.message == "empty 'run' command in stage 's'"


def test_stage_name_rules() -> None:
    diag = only('pipeline "p"\nstage "bad name!" { run "y"; }\n')
    assert (diag.line, diag.col) == (2, 7)
    assert diag.message == "stage name 'bad name!' is not allowed"
    assert validate('pipeline "p"\nstage "ok-1.2_x" { run "y"; }\n') == []
    assert validate(f'pipeline "p"\nstage "{"a" * 63}" {{ run "y"; }}\n') == []
    assert len(validate(f'pipeline "p"\nstage "{"a" * 64}" {{ run "y"; }}\n')) == 1
    assert len(validate('pipeline "p"\nstage "-lead" { run "y"; }\n')) == 1


def test_stage_name_missing_or_not_a_string() -> None:
    assert only('pipeline "p"\nstage { run "y"; }\n').message == "'stage' takes exactly 1 value, got 0"
    assert only('pipeline "p"\nstage 3 { run "y"; }\n').message == "'stage' takes a quoted string, got 3"


def test_empty_stage_name_is_reported() -> None:
    # BUG: controller/definition/validate.py _build_stage: for `stage ""` the name check is skipped
    # (`if name and ...`) and `if not name: return None, needs` drops the stage without any
    # diagnostic, so validate() returns [] and load() silently loses the stage.
    source = 'pipeline "p"\nstage "a" { run "x"; }\nstage "" { run "y"; }\n'
    diagnostics = validate(source)
    assert [d.line for d in diagnostics] == [3], diagnostics
    assert "stage" in diagnostics[0].message


def test_unknown_stage_property_suggests_needs() -> None:
    diag = only('pipeline "p"\nstage "a" { run "x"; }\nstage "e" need="a" { run "y"; }\n')
    assert (diag.line, diag.col) == (3, 11)
    assert diag.message == "unknown property 'need' on 'stage'"
    assert diag.hint == "did you mean 'needs'?"


def test_needs_property_must_be_a_string() -> None:
    diag = only('pipeline "p"\nstage "g" needs=1 { run "y"; }\n')
    assert (diag.line, diag.col) == (2, 11)
    assert diag.message == "property 'needs' on 'stage' takes a quoted string"


def test_unknown_need_child_form_points_at_the_name() -> None:
    source = 'pipeline "p"\nstage "a" { run "x"; }\nstage "c" {\n    needs "a" "ghost"\n    run "x"\n}\n'
    diag = only(source)
    assert (diag.line, diag.col) == (4, 15)
    assert diag.message == "stage 'c' needs unknown stage 'ghost'"
    assert diag.hint == "stages: a"


def test_unknown_need_comma_form_points_at_the_property() -> None:
    diag = only('pipeline "p"\nstage "a" { run "x"; }\nstage "b" needs="a,zz" { run "y"; }\n')
    assert (diag.line, diag.col) == (3, 11)
    assert diag.message == "stage 'b' needs unknown stage 'zz'"


def test_unknown_stage_child_suggests_or_lists() -> None:
    diagnostics = validate(stage_file('run "x"\nimgae "py"\nfoo bar=1'))
    assert where(diagnostics) == [(4, 5), (5, 5)]
    assert diagnostics[0].hint == "did you mean 'image'?"
    assert diagnostics[1].message == "unknown node 'foo' in stage 's'"
    assert diagnostics[1].hint == (
        "allowed in a stage: artifacts, env, image, labels, needs, queue-timeout, resources, retries, run, "
        "timeout, when, workdir"
    )


def test_non_repeatable_child_given_twice() -> None:
    diagnostics = validate(stage_file('run "x"\nimage "a"\nimage "b"\nworkdir "x"\nworkdir "y"'))
    assert [(d.line, d.col, d.message) for d in diagnostics] == [
        (5, 5, "'image' is given twice in stage 's' (first on line 4)"),
        (7, 5, "'workdir' is given twice in stage 's' (first on line 6)"),
    ]


def test_child_node_cannot_have_a_block() -> None:
    diag = only(stage_file('run "ok"\nrun "x" { y; }'))
    assert (diag.line, diag.col) == (4, 13)
    assert diag.message == "'run' in stage 's' takes no block"


def test_child_value_count_and_type() -> None:
    diagnostics = validate(stage_file('run "x"\nenv "ONE"\nimage "a" "b"\nrun\nretries "2"'))
    assert [(d.line, d.message) for d in diagnostics] == [
        (4, "'env' in stage 's' takes exactly 2 values, got 1"),
        (5, "'image' in stage 's' takes exactly 1 value, got 2"),
        (6, "'run' in stage 's' takes at least 1 value, got 0"),
        (7, "'retries' in stage 's' takes an integer, got '2'"),
    ]
    assert diagnostics[3].hint == "example: retries 2"


def test_bool_is_not_an_integer() -> None:
    diag = only(stage_file('run "x"\nretries true'))
    assert diag.message == "'retries' in stage 's' takes an integer, got True"


def test_empty_image() -> None:
    diag = only(stage_file('run "x"\nimage "  "'))
    assert (diag.line, diag.col, diag.message) == (4, 5, "'image' in stage 's' is empty")


# --- durations and retries ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90.0),
        ("10m", 600.0),
        ("2h", 7200.0),
        ("1h30m", 5400.0),
        ("1m30s", 90.0),
        ("1h2m3s", 3723.0),
        ("500ms", 0.5),
        ("1s500ms", 1.5),
        ("5m5ms", 300.005),
        ("45", 45.0),
        (" 1h 30m ", 5400.0),
        ("0s", 0.0),
        (30, 30.0),
        (0, 0.0),
    ],
)
def test_parse_duration_valid(text: str | int, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "text", ["", "  ", "abc", "1d", "30M", "1.5h", "-5", "1s1h", "30m1h", "h", "ms", "10 minutes", "5x"]
)
def test_parse_duration_malformed(text: str) -> None:
    assert parse_duration(text) is None


@pytest.mark.parametrize(
    ("value", "seconds"), [('"1h30m"', 5400.0), ('"500ms"', 0.5), ("90", 90.0), ('"168h"', 604800.0)]
)
def test_timeout_maps_to_seconds(value: str, seconds: float) -> None:
    stage = load_pipeline(stage_file(f'run "x"\ntimeout {value}')).stage("s")
    assert stage.timeout_s == seconds


@pytest.mark.parametrize("value", ['"abc"', "0", '"0s"', '"169h"', '"8d"'])
def test_bad_timeouts(value: str) -> None:
    diag = only(stage_file(f'run "x"\ntimeout {value}'))
    assert (diag.line, diag.col) == (4, 5)
    assert diag.message.startswith("bad duration ")
    assert diag.message.endswith("for 'timeout' in stage 's'")


def test_timeout_float_is_a_type_error() -> None:
    diag = only(stage_file('run "x"\ntimeout 1.5'))
    assert diag.message == "'timeout' in stage 's' takes a quoted string or an integer, got 1.5"


# --- queue-timeout ----------------------------------------------------------------------------


def test_queue_timeout_stage_wins_over_pipeline_wins_over_default() -> None:
    source = (
        'pipeline "p"\nqueue-timeout "10m"\n'
        'stage "own" { run "x"; queue-timeout "90s"; }\n'
        'stage "inherits" { run "x"; }\n'
    )
    pipeline = load_pipeline(source)
    assert pipeline.queue_timeout_s == 600.0
    assert pipeline.stage("own").queue_timeout_s == 90.0
    assert pipeline.queue_timeout_for("own") == 90.0
    assert pipeline.queue_timeout_for("inherits") == 600.0
    plain = load_pipeline(stage_file('run "x"'))
    assert plain.queue_timeout_s is None and plain.queue_timeout_for("s") == DEFAULT_QUEUE_TIMEOUT_S == 3600.0


@pytest.mark.parametrize("value", ['"abc"', "0", '"0s"', '"169h"', '"-5m"'])
def test_bad_stage_queue_timeout_is_reported_at_its_node(value: str) -> None:
    diag = only(stage_file(f'run "x"\nqueue-timeout {value}'))
    assert (diag.file, diag.line, diag.col) == ("f.kdl", 4, 5)
    assert diag.message.startswith("bad duration ")
    assert diag.message.endswith("for 'queue-timeout' in stage 's'")
    assert '"10m"' in diag.hint


def test_bad_pipeline_queue_timeout_is_reported_at_its_node() -> None:
    diag = only('pipeline "p"\n\n  queue-timeout "soon"\nstage "a" { run "x"; }\n')
    assert (diag.line, diag.col) == (3, 3)
    assert diag.message == "bad duration 'soon' for 'queue-timeout' at the top level"
    assert diag.format().startswith("f.kdl:3:3: error: bad duration 'soon'")


def test_queue_timeout_shape_errors() -> None:
    float_value = only(stage_file('run "x"\nqueue-timeout 1.5'))
    assert float_value.message == "'queue-timeout' in stage 's' takes a quoted string or an integer, got 1.5"
    twice = only('pipeline "p"\nqueue-timeout "1m"\nqueue-timeout "2m"\nstage "a" { run "x"; }\n')
    assert (twice.line, twice.message) == (3, "'queue-timeout' is given twice (first on line 2)")
    missing = only('pipeline "p"\nqueue-timeout\nstage "a" { run "x"; }\n')
    assert missing.message == "'queue-timeout' at the top level takes exactly 1 value, got 0"
    assert missing.hint == 'example: queue-timeout "30m"'


@pytest.mark.parametrize("value", [0, 1, MAX_RETRIES])
def test_retries_in_range(value: int) -> None:
    assert load_pipeline(stage_file(f'run "x"\nretries {value}')).stage("s").retries == value


@pytest.mark.parametrize("value", [-1, MAX_RETRIES + 1])
def test_retries_out_of_range(value: int) -> None:
    diag = only(stage_file(f'run "x"\nretries {value}'))
    assert (diag.line, diag.col) == (4, 5)
    assert diag.message == f"'retries' in stage 's' must be between 0 and 10, got {value}"


# --- labels, artifacts, workdir, when ----------------------------------------------------------


def test_labels_must_be_key_value() -> None:
    diagnostics = validate(stage_file('run "x"\nlabels "os=linux" "bad" "=v" "k=a b"'))
    assert [(d.line, d.col) for d in diagnostics] == [(4, 23), (4, 29), (4, 34)]
    assert diagnostics[0].message == "label 'bad' in stage 's' is not of the form key=value"
    assert diagnostics[1].message == "label '=v' in stage 's' is not of the form key=value"
    assert diagnostics[2].message == "label 'k=a b' in stage 's' is not of the form key=value"


def test_label_keys_may_have_paths_and_values_may_be_empty() -> None:
    stage = load_pipeline(stage_file('run "x"\nlabels "buildit.dev/pool=fast" "k=" "a=b=c"')).stage("s")
    assert stage.labels == {"buildit.dev/pool": "fast", "k": "", "a": "b=c"}


def test_artifact_path_rules() -> None:
    diagnostics = validate(stage_file('run "x"\nartifacts "../x" "/abs" "dist/*.whl" "a/../b" ""'))
    assert [(d.line, d.col, d.message) for d in diagnostics] == [
        (4, 15, "artifact pattern '../x' in stage 's' contains '..'"),
        (4, 22, "artifact pattern '/abs' in stage 's' is absolute"),
        (4, 42, "artifact pattern 'a/../b' in stage 's' contains '..'"),
        (4, 51, "artifact pattern '' in stage 's' is empty"),
    ]


def test_artifact_backslash_dotdot_is_refused() -> None:
    diag = only(stage_file('run "x"\nartifacts "a\\\\..\\\\b"'))
    assert diag.message == "artifact pattern 'a\\..\\b' in stage 's' contains '..'"


def test_artifact_names_with_dots_are_fine() -> None:
    stage = load_pipeline(stage_file('run "x"\nartifacts "..hidden/x" "a..b" "./out"')).stage("s")
    assert stage.artifacts == ("..hidden/x", "a..b", "./out")


@pytest.mark.parametrize(
    ("workdir", "problem"), [("/abs", "is absolute"), ("a/../b", "contains '..'"), ("..", "contains '..'")]
)
def test_workdir_path_rules(workdir: str, problem: str) -> None:
    diag = only(stage_file(f'run "x"\nworkdir "{workdir}"'))
    assert (diag.line, diag.col) == (4, 5)
    assert diag.message == f"workdir '{workdir}' in stage 's' {problem}"


def test_workdir_slashes_trimmed() -> None:
    assert load_pipeline(stage_file('run "x"\nworkdir "a/b/"')).stage("s").workdir == "a/b"


def test_when_needs_a_branch() -> None:
    diag = only(stage_file('run "x"\nwhen'))
    assert (diag.line, diag.col, diag.message) == (4, 5, "'when' in stage 's' needs a condition")


def test_when_unknown_property_points_at_it() -> None:
    diag = only(stage_file('run "x"\nwhen branch="main" tag="v1"'))
    assert (diag.line, diag.col) == (4, 24)
    assert diag.message == "unknown property 'tag' on 'when' in stage 's'"
    assert diag.hint == "allowed properties: branch"


def test_property_on_child_that_takes_none() -> None:
    diag = only(stage_file('run "ok"\nrun "x" shell="bash"'))
    assert (diag.line, diag.col) == (4, 13)
    assert diag.message == "unknown property 'shell' on 'run' in stage 's'"
    assert diag.hint.startswith("'run' takes no properties")


# --- env ----------------------------------------------------------------------------------------


def test_stage_env_name_rules() -> None:
    diagnostics = validate(stage_file('run "x"\nenv "BUILDIT_X" "1"\nenv "1BAD" "1"\nenv "A-B" "1"'))
    assert [(d.line, d.col, d.message) for d in diagnostics] == [
        (4, 5, "env name 'BUILDIT_X' in stage 's' is reserved"),
        (5, 5, "env name '1BAD' in stage 's' is not a valid variable name"),
        (6, 5, "env name 'A-B' in stage 's' is not a valid variable name"),
    ]
    assert diagnostics[0].hint == "BUILDIT_* names are set by BuildIt"


def test_env_values_may_be_numbers_and_booleans() -> None:
    stage = load_pipeline(stage_file('run "x"\nenv "A" 1\nenv "B" 2.5\nenv "C" false')).stage("s")
    assert stage.env == (("A", "1"), ("B", "2.5"), ("C", "false"))


# --- variables ----------------------------------------------------------------------------------


def test_unknown_variable_context_and_malformed_reference() -> None:
    # `${nodot}` is plain shell syntax (like ${HOME}) and is left alone.
    diagnostics = validate(stage_file('run "echo ${foo.bar} ${nodot} ${git.sha"'))
    assert [(d.line, d.col) for d in diagnostics] == [(3, 15), (3, 35)]
    assert diagnostics[0].message == "unknown variable context 'foo' in '${foo.bar}' in stage 's'"
    assert diagnostics[0].hint == "contexts: git, pipeline, run, stage, env, secrets"
    assert diagnostics[1].message == "variable reference '${' is never closed with '}' in stage 's'"


def test_undeclared_env_variable() -> None:
    diag = only(stage_file('env "HOST" "h"\nrun "curl ${env.HOTS}"'))
    assert (diag.line, diag.col) == (4, 15)
    assert diag.message == "'${env.HOTS}' in stage 's' names an env variable that is not declared"
    assert diag.hint == "did you mean 'HOST'?"


def test_undeclared_env_variable_without_any_env_suggests_declaring() -> None:
    diag = only(stage_file('run "echo ${env.NOPE}"'))
    assert diag.hint == 'declare it with env "NOPE" "value" in the stage or at the top level'


def test_env_declared_in_another_stage_is_not_visible() -> None:
    source = 'pipeline "p"\nstage "a" { env "X" "1"; run "x"; }\nstage "b" { run "echo ${env.X}"; }\n'
    diag = only(source)
    assert (diag.line, diag.col) == (3, 23)
    assert "'${env.X}' in stage 'b'" in diag.message


def test_variables_in_env_values_are_checked() -> None:
    diag = only(stage_file('run "x"\nenv "A" "${git.nope}"'))
    assert (diag.line, diag.col) == (4, 14)
    assert diag.message == "unknown variable '${git.nope}' in stage 's'"


def test_all_known_variables_are_accepted() -> None:
    refs = " ".join(
        f"${{{v}}}"
        for v in (
            "git.sha",
            "git.short_sha",
            "git.branch",
            "git.message",
            "git.author",
            "pipeline.id",
            "pipeline.name",
            "run.id",
            "run.number",
            "stage.name",
            "stage.index",
            "secrets.ANY_name1",
        )
    )
    assert validate(stage_file(f'run "echo {refs}"')) == []


@pytest.mark.parametrize(("node", "col"), [("image", 14), ("workdir", 16)])
def test_secrets_not_allowed_in_image_or_workdir(node: str, col: int) -> None:
    diag = only(stage_file(f'run "x"\n{node} "x/${{secrets.T}}"'))
    assert (diag.line, diag.col) == (4, col)
    assert diag.message == f"secrets cannot be used in '{node}' in stage 's': its value would appear in logs"


def test_secrets_through_env_not_allowed_in_image() -> None:
    # BUG: controller/definition/validate.py _check_variables(allow_secrets=False) only rejects the
    # `secrets` context; `image "reg/${env.TOK}:1"` with `env "TOK" "${secrets.T}"` validates, and
    # plan() then substitutes the secret literally into StageSpec.image (observed: 'reg/s3cr3t:1'),
    # which is exactly what the "secrets cannot be used in 'image'" rule is meant to prevent.
    source = stage_file('env "TOK" "${secrets.T}"\nimage "reg/${env.TOK}:1"\nrun "x"')
    messages = [d.message for d in validate(source)]
    assert any("secrets cannot be used in 'image'" in m for m in messages), messages


def test_non_secret_variables_allowed_in_image_and_workdir() -> None:
    source = stage_file('env "V" "3.12"\nimage "python:${env.V}"\nworkdir "build/${git.short_sha}"\nrun "x"')
    assert validate(source) == []


# --- graph --------------------------------------------------------------------------------------


def test_self_need_is_a_cycle() -> None:
    diag = only('pipeline "p"\nstage "a" needs="a" { run "x"; }\n')
    assert (diag.line, diag.col) == (2, 1)
    assert diag.message == "dependency cycle: a -> a"


def test_three_cycle_reports_the_path() -> None:
    source = (
        'pipeline "p"\nstage "ok" { run "x"; }\n'
        'stage "a" needs="c" { run "x"; }\n'
        'stage "b" needs="a" { run "x"; }\n'
        'stage "c" needs="b" { run "x"; }\n'
    )
    diag = only(source)
    assert (diag.line, diag.col) == (3, 1)
    assert diag.message == "dependency cycle: a -> c -> b -> a"
    assert "cannot need itself" in diag.hint


def test_unknown_need_does_not_also_count_as_cycle() -> None:
    source = 'pipeline "p"\nstage "a" needs="b,x" { run "x"; }\nstage "b" { run "y"; }\n'
    assert [d.message for d in validate(source)] == ["stage 'a' needs unknown stage 'x'"]


# --- Diagnostic / PipelineInvalid ----------------------------------------------------------------


def test_diagnostic_format_without_source() -> None:
    diag = Diagnostic("f.kdl", 3, 7, "something broke", "fix it")
    assert diag.format() == "f.kdl:3:7: error: something broke\n  hint: fix it"
    assert Diagnostic("f.kdl", 1, 1, "m").format() == "f.kdl:1:1: error: m"


def test_diagnostic_format_with_source_shows_line_and_caret() -> None:
    source = 'pipeline "p"\nstage "a" needs="zz" { run "x"; }\n'
    lines = Diagnostic("f.kdl", 2, 11, "bad need", "hint text").format(source).splitlines()
    assert lines[0] == "f.kdl:2:11: error: bad need"
    assert lines[1] == '    2 | stage "a" needs="zz" { run "x"; }'
    assert lines[2] == "      |           ^"
    assert lines[2].index("^") == lines[1].index("needs=")
    assert lines[3] == "  hint: hint text"


def test_diagnostic_caret_lines_up_under_tabs() -> None:
    source = 'pipeline "p"\nstage "a" {\n\trun "x ${git.sah}"\n}\n'
    diag = only(source)
    assert (diag.line, diag.col) == (3, 9)
    excerpt, caret = diag.format(source).splitlines()[1:3]
    assert excerpt[caret.index("^") :].startswith("${git.sah}")


def test_diagnostic_format_line_out_of_range_has_no_excerpt() -> None:
    text = Diagnostic("f", 9, 1, "m").format("one line\n")
    assert text == "f:9:1: error: m"


def test_pipeline_invalid_message_and_report() -> None:
    diags = [Diagnostic("f", 1, 1, "first"), Diagnostic("f", 2, 3, "second", "h")]
    exc = PipelineInvalid(diags, "a\nbcd\n")
    assert str(exc) == "f:1:1: error: first\nf:2:3: error: second\n  hint: h"
    assert exc.report() == (
        "f:1:1: error: first\n    1 | a\n      | ^\nf:2:3: error: second\n    2 | bcd\n      |   ^\n  hint: h"
    )


# --- large pipelines -----------------------------------------------------------------------------


def reverse_chain(n: int, cycle: bool = False) -> str:
    """s{n-1} declared first, needing s{n-2}, ... down to s0; with `cycle`, s0 needs s{n-1}."""
    lines = ['pipeline "big"']
    for i in reversed(range(n)):
        need = f"s{i - 1}" if i else (f"s{n - 1}" if cycle else "")
        lines.append(f'stage "s{i}"' + (f' needs="{need}"' if need else "") + ' { run "echo"; }')
    return "\n".join(lines) + "\n"


def test_a_1000_stage_chain_in_reverse_order_loads() -> None:
    pipeline = load_pipeline(reverse_chain(1_000))
    assert [s.name for s in pipeline.stages[:2]] == ["s999", "s998"]
    assert pipeline.stage("s999").needs == ("s998",)


def test_a_1000_stage_chain_closed_into_a_cycle_reports_the_cycle() -> None:
    diagnostic = only(reverse_chain(1_000, cycle=True))
    assert (diagnostic.line, diagnostic.col) == (2, 1)  # s999, where the search starts
    assert diagnostic.message.startswith("dependency cycle: s999 -> s998 -> s997 -> ")
    assert diagnostic.message.endswith(" -> s1 -> s0 -> s999")


def test_unknown_needs_search_for_a_suggestion_a_bounded_number_of_times(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import difflib

    searches = 0
    real = difflib.get_close_matches

    def counting(*args: Any, **kwargs: Any) -> list[str]:
        nonlocal searches
        searches += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(difflib, "get_close_matches", counting)
    source = 'pipeline "p"\n' + "".join(
        f'stage "s{i}" needs="ghost{i % 50}" {{ run "x"; }}\n' for i in range(2_000)
    )
    diagnostics = validate(source)
    assert len(diagnostics) == 2_000
    assert searches == 10  # one per distinct unknown name, at most ten
    assert diagnostics[0].hint.startswith("stages: s1, s10, s100, ")  # not s0: that is the stage
    assert diagnostics[0].hint.endswith(" and 1,979 more")
    # Past the searches, the hint lists a few stages, never all 2,000.
    assert diagnostics[-1].hint.startswith("stages: s0, s1, s10, ")
    assert diagnostics[-1].hint.endswith(" and 1,979 more")


def test_a_suggestion_is_never_the_stage_itself() -> None:
    diagnostic = only('pipeline "p"\nstage "build" needs="buidl" { run "x"; }\nstage "test" { run "x"; }\n')
    assert diagnostic.hint == "stages: test"


# --- names shown to people ---------------------------------------------------------------------


def test_a_bidi_override_in_the_pipeline_name_is_refused_at_its_column() -> None:
    d = only('pipeline "my\u202eapp"\nstage "s" { run "x"; }\n')
    assert (d.line, d.col) == (1, 13)
    assert d.message == (
        "the pipeline name 'my\\u202eapp' contains U+202E RIGHT-TO-LEFT OVERRIDE "
        "(a bidirectional control) at character 3"
    )
    assert "bidirectional controls, zero-width or control characters" in d.hint
    assert "\u202e" not in d.message + d.hint


def test_zero_width_and_control_characters_in_a_stage_name_are_named() -> None:
    source = 'pipeline "p"\nstage "te\u200bst" { run "x"; }\nstage "b\x1b" { run "y"; }\n'
    diagnostics = validate(source, "f.kdl")
    assert [(d.line, d.col) for d in diagnostics] == [(2, 10), (3, 9)]
    assert "U+200B ZERO WIDTH SPACE (a zero-width character) at character 3" in diagnostics[0].message
    assert "U+001B ESCAPE (a control character) at character 2" in diagnostics[1].message
    assert all(d.format().startswith("f.kdl:") for d in diagnostics)


def test_an_escaped_bidi_character_is_refused_at_the_node() -> None:
    d = only('pipeline "a\\u{2067}b"\nstage "s" { run "x"; }\n')
    assert (d.line, d.col) == (1, 1)
    assert "U+2067 RIGHT-TO-LEFT ISOLATE" in d.message


# --- resources --------------------------------------------------------------------------------


def test_resources_are_kubernetes_quantities_kept_as_integers() -> None:
    pipeline = load_pipeline(stage_file('run "x"\nresources cpu="1.5" memory="4Gi" pids=512'))
    assert pipeline.stage("s").resources == Resources(cpu_millis=1500, memory_bytes=4 * 2**30, pids=512)
    assert pipeline.stage("s").resources.describe() == "cpu=1500m, memory=4Gi, pids=512"
    numbers = load_pipeline(stage_file('run "x"\nresources cpu=2 memory="500M"'))
    assert numbers.stage("s").resources == Resources(cpu_millis=2000, memory_bytes=500_000_000)
    assert not load_pipeline(stage_file('run "x"')).stage("s").resources


@pytest.mark.parametrize(
    ("node", "col", "message"),
    [
        ('resources cpu="2x"', 15, "bad cpu '2x' for 'resources' in stage 's'"),
        ('resources cpu="1m"', 15, "bad cpu '1m' for 'resources' in stage 's'"),
        ('resources cpu="0.0001"', 15, "bad cpu '0.0001' for 'resources' in stage 's'"),
        ('resources memory="3"', 15, "bad memory '3' for 'resources' in stage 's'"),
        ('resources memory="4GB"', 15, "bad memory '4GB' for 'resources' in stage 's'"),
        ("resources pids=0", 15, "bad pids 0 for 'resources' in stage 's'"),
        ("resources", 5, "'resources' in stage 's' sets nothing"),
        ('resources gpu="1"', 15, "unknown property 'gpu' on 'resources' in stage 's'"),
    ],
)
def test_a_bad_resource_is_reported_at_its_property(node: str, col: int, message: str) -> None:
    diag = only(stage_file(f'run "x"\n{node}'))
    assert (diag.file, diag.line, diag.col, diag.message) == ("f.kdl", 4, col, message)
    assert diag.hint
