"""`trigger` nodes: what starts a pipeline's runs (push, cron, manual), validated with positions."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from controller.definition.model import Diagnostic, Pipeline, Trigger, cron_triggers, runs_on_push
from controller.definition.plan import RunContext, plan
from controller.definition.validate import load, validate

ROOT = Path(__file__).resolve().parents[3]
STAGE = 'stage "a" { run "x"; }\n'


def with_triggers(*lines: str) -> str:
    """A valid pipeline whose trigger lines start on line 2."""
    return 'pipeline "p"\n' + "".join(f"{line}\n" for line in lines) + STAGE


def triggers(*lines: str) -> tuple[Trigger, ...]:
    return load(with_triggers(*lines), "f.kdl").triggers


def only(*lines: str) -> Diagnostic:
    diagnostics = validate(with_triggers(*lines), "f.kdl")
    assert len(diagnostics) == 1, "\n".join(d.format() for d in diagnostics)
    return diagnostics[0]


def pipeline_with(*items: Trigger) -> Pipeline:
    return Pipeline(name="p", stages=(), triggers=items)


# --- valid files -------------------------------------------------------------------------------


def test_without_trigger_nodes_a_pipeline_runs_on_push() -> None:
    assert triggers() == (Trigger("push"),)
    assert Pipeline(name="p", stages=()).triggers == (Trigger("push"),)


def test_every_form_maps_to_the_model_in_file_order() -> None:
    assert triggers(
        'trigger "push" branches="main" "release/*"',
        'trigger "cron" "*/15 * * * *"',
        'trigger "cron" "0 3 * * 1-5" branch="main"',
        'trigger "manual"',
    ) == (
        Trigger("push", branches=("main", "release/*")),
        Trigger("cron", cron="*/15 * * * *"),
        Trigger("cron", cron="0 3 * * 1-5", branch="main"),
        Trigger("manual"),
    )


def test_push_branches_as_values_a_comma_list_or_both() -> None:
    assert triggers('trigger "push" "main" "release/*"') == (Trigger("push", branches=("main", "release/*")),)
    assert triggers('trigger "push" branches="main, release/*,,dev"') == (
        Trigger("push", branches=("main", "release/*", "dev")),
    )
    # Duplicates are dropped, first mention first.
    assert triggers('trigger "push" "dev" "main" branches="main"') == (
        Trigger("push", branches=("main", "dev")),
    )


def test_cron_schedule_is_stored_with_single_spaces() -> None:
    assert triggers('trigger "cron" "  0  3 * *   MON "') == (Trigger("cron", cron="0 3 * * MON"),)
    assert triggers('trigger "cron" "@daily"') == (Trigger("cron", cron="@daily"),)


def test_listing_triggers_replaces_the_default_push() -> None:
    # With trigger nodes only the listed ones start runs: a schedule alone means no push runs.
    assert triggers('trigger "cron" "@daily"') == (Trigger("cron", cron="@daily"),)
    assert triggers('trigger "manual"') == (Trigger("manual"),)


def test_different_triggers_of_one_kind_may_be_combined() -> None:
    assert triggers(
        'trigger "push" "main"',
        'trigger "push" "release/*"',
        'trigger "cron" "0 3 * * *"',
        'trigger "cron" "0 3 * * *" branch="develop"',
        'trigger "cron" "0 4 * * *"',
    ) == (
        Trigger("push", branches=("main",)),
        Trigger("push", branches=("release/*",)),
        Trigger("cron", cron="0 3 * * *"),
        Trigger("cron", cron="0 3 * * *", branch="develop"),
        Trigger("cron", cron="0 4 * * *"),
    )


def test_triggers_may_come_anywhere_at_the_top_level() -> None:
    source = 'trigger "manual"\npipeline "p"\n' + STAGE + 'trigger "cron" "@hourly"\n'
    assert load(source).triggers == (Trigger("manual"), Trigger("cron", cron="@hourly"))


def test_triggers_do_not_change_planning() -> None:
    source = with_triggers('trigger "manual"', 'trigger "cron" "@daily"')
    compiled = plan(load(source), RunContext())
    assert [spec.name for spec in compiled.specs] == ["a"]


def test_cron_example_is_valid_and_parsed() -> None:
    path = ROOT / "examples" / "cron" / ".buildit.kdl"
    pipeline = load(path.read_text(), str(path))
    assert pipeline.triggers == (
        Trigger("push", branches=("main", "release/*")),
        Trigger("cron", cron="0 3 * * MON-FRI"),
        Trigger("cron", cron="@weekly", branch="main"),
    )


def test_invalid_trigger_example_fails_where_its_expect_line_says() -> None:
    path = ROOT / "examples" / "invalid" / "bad-trigger.kdl"
    source = path.read_text()
    expect = re.match(r"// expect: (\d+):(\d+) (.+)", source.splitlines()[0])
    assert expect is not None
    line, col, fragment = expect.groups()
    reported = [d.format().splitlines()[0] for d in validate(source, str(path))]
    assert any(text.startswith(f"{path}:{line}:{col}: error: {fragment}") for text in reported), reported


# --- runs_on_push / cron_triggers --------------------------------------------------------------


def test_runs_on_push_by_default_on_every_branch() -> None:
    pipeline = load(with_triggers())
    assert runs_on_push(pipeline, "main")
    assert runs_on_push(pipeline, "feature/x")


@pytest.mark.parametrize(
    ("branch", "expected"),
    [
        ("main", True),
        ("release/1.0", True),
        ("release/1.0/hotfix", True),  # fnmatch: '*' also matches '/', as in `when branch=`
        ("release", False),
        ("Main", False),  # case-sensitive, like git
        ("feature/release/1", False),
        ("hotfix-7", True),
        ("hotfix-77", False),
    ],
)
def test_runs_on_push_matches_branch_globs(branch: str, expected: bool) -> None:
    pipeline = load(with_triggers('trigger "push" "main" "release/*" "hotfix-?"'))
    assert runs_on_push(pipeline, branch) is expected


def test_runs_on_push_with_several_push_triggers_is_their_union() -> None:
    pipeline = pipeline_with(Trigger("push", branches=("main",)), Trigger("push", branches=("dev*",)))
    assert runs_on_push(pipeline, "main")
    assert runs_on_push(pipeline, "develop")
    assert not runs_on_push(pipeline, "feature")


def test_no_push_runs_without_a_push_trigger() -> None:
    assert not runs_on_push(pipeline_with(Trigger("manual")), "main")
    assert not runs_on_push(pipeline_with(Trigger("cron", cron="@daily")), "main")
    assert runs_on_push(pipeline_with(Trigger("manual"), Trigger("push")), "main")


def test_cron_triggers_in_file_order() -> None:
    pipeline = load(
        with_triggers(
            'trigger "cron" "0 4 * * *" branch="main"',
            'trigger "push"',
            'trigger "cron" "*/15 * * * *"',
        )
    )
    assert cron_triggers(pipeline) == (
        Trigger("cron", cron="0 4 * * *", branch="main"),
        Trigger("cron", cron="*/15 * * * *"),
    )
    assert cron_triggers(load(with_triggers())) == ()


def test_trigger_matches_branch_only_for_push() -> None:
    assert Trigger("push").matches_branch("anything")
    assert not Trigger("cron", cron="@daily", branch="main").matches_branch("main")
    assert not Trigger("manual").matches_branch("main")


# --- problems, with positions ------------------------------------------------------------------


CRON_HINT = (
    "the fields are minute hour day-of-month month day-of-week, in UTC, "
    'e.g. "*/15 * * * *" (every 15 minutes) or "0 3 * * 1-5" (03:00 UTC, Monday to Friday)'
)


@pytest.mark.parametrize(
    ("line", "col", "message", "hint"),
    [
        ('trigger "crom" "@daily"', 9, "unknown trigger kind 'crom'", "did you mean 'cron'?"),
        ('trigger "Push"', 9, "unknown trigger kind 'Push'", "did you mean 'push'?"),
        ('trigger "webhook"', 9, "unknown trigger kind 'webhook'", "trigger kinds: cron, manual, push"),
        ("trigger", 1, "'trigger' needs a kind: push, cron or manual", 'example: trigger "push"'),
        (
            "trigger 5",
            1,
            "the kind of 'trigger' is a quoted string (push, cron or manual), got 5",
            'example: trigger "push"',
        ),
        (
            'trigger "cron"',
            1,
            "trigger 'cron' needs a schedule",
            'example: trigger "cron" "0 3 * * 1-5" branch="main"; '
            "the fields are minute hour day-of-month month day-of-week, in UTC",
        ),
        (
            'trigger "cron" "0" "3" "*" "*" "*"',
            1,
            "trigger 'cron' takes one schedule, got 5 values",
            'write the five fields in one string: trigger "cron" "0 3 * * 1-5"',
        ),
        (
            'trigger "cron" 15',
            1,
            "the schedule of trigger 'cron' is a quoted string, got 15",
            'example: trigger "cron" "0 3 * * 1-5" branch="main"',
        ),
        (
            'trigger "cron" "0 3 * * 8"',
            25,
            "bad cron schedule '0 3 * * 8': day-of-week 8 is out of range (0-7 or SUN-SAT)",
            CRON_HINT,
        ),
        (
            'trigger "cron" "*/15 24 * * *"',
            22,
            "bad cron schedule '*/15 24 * * *': hour 24 is out of range (0-23)",
            CRON_HINT,
        ),
        (
            'trigger "cron" "0 0 * * * *"',
            17,
            "bad cron schedule '0 0 * * * *': the schedule has 6 fields, cron takes 5: "
            "minute hour day-of-month month day-of-week (seconds and years are not supported)",
            CRON_HINT,
        ),
        (
            'trigger "cron" "@reboot"',
            17,
            "bad cron schedule '@reboot': '@reboot' is not a schedule: "
            "pipelines start on pushes, on schedules or by hand",
            CRON_HINT,
        ),
        ('trigger "cron" ""', 17, "bad cron schedule '': the schedule is empty", CRON_HINT),
        (
            'trigger "cron" "0 3 * * MON" branches="main"',
            30,
            "unknown property 'branches' on trigger 'cron'",
            "did you mean 'branch'?",
        ),
        (
            'trigger "cron" "@daily" branch="release/*"',
            25,
            "trigger 'cron' runs on one branch, not a glob: 'release/*'",
            'name a branch, e.g. branch="main"; without branch= it runs on the default branch',
        ),
        (
            'trigger "cron" "@daily" branch=""',
            25,
            "branch '' of trigger 'cron' is empty",
            'example: trigger "cron" "0 3 * * 1-5" branch="main"',
        ),
        (
            'trigger "cron" "@daily" branch=3',
            25,
            "property 'branch' on trigger 'cron' takes a quoted string",
            'example: trigger "cron" "0 3 * * 1-5" branch="main"',
        ),
        (
            'trigger "push" branch="main"',
            16,
            "unknown property 'branch' on trigger 'push'",
            "did you mean 'branches'?",
        ),
        (
            'trigger "push" "my branch"',
            16,
            "branch glob 'my branch' of trigger 'push' is not a valid branch name (no spaces or ~ ^ : \\)",
            "example: main or release/*",
        ),
        ('trigger "push" ""', 16, "branch glob '' of trigger 'push' is empty", "example: main or release/*"),
        (
            'trigger "push" branches=" , "',
            16,
            "property 'branches' on trigger 'push' is empty",
            'example: trigger "push" branches="main,release/*"',
        ),
        (
            'trigger "push" 5',
            1,
            "branch globs of trigger 'push' are quoted strings, got 5",
            'example: trigger "push" branches="main,release/*"',
        ),
        (
            'trigger "manual" "now"',
            1,
            "trigger 'manual' takes no other values, got 1",
            'example: trigger "manual"',
        ),
        (
            'trigger "manual" branch="main"',
            18,
            "unknown property 'branch' on trigger 'manual'",
            "trigger 'manual' takes no properties; example: trigger \"manual\"",
        ),
        (
            'trigger "push" { branches "main"; }',
            16,
            "trigger 'push' takes no block",
            'example: trigger "push" branches="main,release/*"',
        ),
    ],
)
def test_bad_trigger(line: str, col: int, message: str, hint: str) -> None:
    diag = only(line)
    assert (diag.file, diag.line, diag.col) == ("f.kdl", 2, col)
    assert diag.message == message
    assert diag.hint == hint


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (('trigger "push"', 'trigger "push"'), "push trigger is given twice (first on line 2)"),
        (
            ('trigger "push" "main" "dev"', 'trigger "push" branches="dev,main"'),
            "push trigger for dev, main is given twice (first on line 2)",
        ),
        (('trigger "manual"', 'trigger "manual"'), "manual trigger is given twice (first on line 2)"),
        (
            ('trigger "cron" "0 3 * * *"', 'trigger "cron" "0  3 * * *"'),
            "cron trigger '0 3 * * *' is given twice (first on line 2)",
        ),
        (
            ('trigger "cron" "@daily" branch="main"', 'trigger "cron" "@daily" branch="main"'),
            "cron trigger '@daily' on branch 'main' is given twice (first on line 2)",
        ),
    ],
)
def test_duplicate_identical_triggers(lines: tuple[str, str], message: str) -> None:
    diag = only(*lines)
    assert (diag.line, diag.col) == (3, 1)
    assert diag.message == message
    assert diag.hint == "keep one"


def test_every_trigger_problem_is_reported_with_the_rest() -> None:
    source = (
        'pipeline "p"\n'
        'trigger "cron" "0 3 * * 8"\n'
        'trigger "crom"\n'
        'stage "a" {\n'
        '    imgae "x"\n'
        '    run "x"\n'
        "}\n"
        'trigger "push" branch="main"\n'
    )
    assert [(d.line, d.col, d.message) for d in validate(source, "f.kdl")] == [
        (2, 25, "bad cron schedule '0 3 * * 8': day-of-week 8 is out of range (0-7 or SUN-SAT)"),
        (3, 9, "unknown trigger kind 'crom'"),
        (5, 5, "unknown node 'imgae' in stage 'a'"),
        (8, 16, "unknown property 'branch' on trigger 'push'"),
    ]


def test_cron_error_column_falls_back_to_the_node_when_the_string_has_escapes() -> None:
    # The schedule's text is not verbatim in the source, so the diagnostic points at the node.
    diag = only('trigger "cron" "0 3 * * \\u{38}"')
    assert (diag.line, diag.col) == (2, 1)
    assert diag.message.startswith("bad cron schedule '0 3 * * 8'")


@pytest.mark.parametrize(
    ("name", "hint"),
    [
        ("cron", 'what starts a run is a trigger node: trigger "cron" "0 3 * * 1-5" branch="main"'),
        ("schedule", 'what starts a run is a trigger node: trigger "cron" "0 3 * * 1-5" branch="main"'),
        ("on", 'what starts a run is a trigger node: trigger "cron" "0 3 * * 1-5" branch="main"'),
        ("push", 'what starts a run is a trigger node: trigger "push" branches="main,release/*"'),
        ("manual", 'what starts a run is a trigger node: trigger "manual"'),
        ("triggers", "did you mean 'trigger'?"),
    ],
)
def test_top_level_lookalikes_point_at_trigger(name: str, hint: str) -> None:
    diag = only(f'{name} "0 3 * * *"')
    assert diag.message == f"unknown top-level node '{name}'"
    assert diag.hint == hint


def test_trigger_inside_a_stage_says_to_move_it_out() -> None:
    source = 'pipeline "p"\nstage "a" {\n    trigger "push"\n    run "x"\n}\n'
    diagnostics = validate(source, "f.kdl")
    assert [(d.line, d.col, d.message) for d in diagnostics] == [
        (3, 5, "unknown node 'trigger' in stage 'a'")
    ]
    assert diagnostics[0].hint == (
        "'trigger' is a top-level node: move it out of the stage block, next to 'pipeline'"
    )
