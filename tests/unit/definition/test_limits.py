"""The size limits of a pipeline file: each one exceeded is one diagnostic at the right place,
exactly at the limit is accepted, and nothing crashes on the way (no RecursionError, no blow-up)."""

from __future__ import annotations

import pytest

from controller.definition import limits
from controller.definition.kdl import RawNode, parse
from controller.definition.limits import (
    MAX_COMMANDS_PER_STAGE,
    MAX_ENV_ENTRIES,
    MAX_ENV_VALUE_CHARS,
    MAX_FILE_BYTES,
    MAX_NAME_CHARS,
    MAX_NEEDS,
    MAX_NESTING,
    MAX_NODES,
    MAX_STAGES,
    MAX_TRIGGERS,
    source_problem,
)
from controller.definition.model import Diagnostic, PipelineInvalid
from controller.definition.plan import GitContext, RunContext, plan
from controller.definition.validate import load, validate

HEAD = 'pipeline "p"\nstage "s" { run "x"; }\n'


def only(source: str) -> Diagnostic:
    diagnostics = validate(source, "f.kdl")
    assert len(diagnostics) == 1, "\n".join(d.format() for d in diagnostics)
    return diagnostics[0]


def stages(count: int) -> str:
    return 'pipeline "p"\n' + "".join(f'stage "s{i}" {{ run "x"; }}\n' for i in range(count))


def test_the_limits_are_the_documented_values() -> None:
    # README "Limits" lists these; change both together.
    assert (MAX_FILE_BYTES, MAX_NESTING, MAX_STAGES, MAX_NEEDS) == (1024 * 1024, 16, 10_000, 50_000)
    assert (MAX_TRIGGERS, MAX_NODES) == (100, 100_000)
    assert (MAX_COMMANDS_PER_STAGE, MAX_ENV_ENTRIES, MAX_ENV_VALUE_CHARS, MAX_NAME_CHARS) == (
        1_000,
        256,
        65_536,
        255,
    )


# --- file size ---------------------------------------------------------------------------------


def padded(size: int, fill: str = "x") -> str:
    """A valid pipeline of exactly `size` UTF-8 bytes: HEAD, then a comment of `fill` characters."""
    room = size - len(HEAD.encode()) - len("// \n")
    width = len(fill.encode())
    text = HEAD + "// " + fill * (room // width) + "x" * (room % width) + "\n"
    assert len(text.encode()) == size
    return text


def test_a_file_of_exactly_the_size_limit_is_accepted() -> None:
    assert validate(padded(MAX_FILE_BYTES)) == []
    assert validate(padded(MAX_FILE_BYTES, "é")) == []


@pytest.mark.parametrize("fill", ["x", "é", "😀"])
def test_a_file_over_the_size_limit_is_one_diagnostic_at_1_1(fill: str) -> None:
    source = padded(MAX_FILE_BYTES + 1, fill)
    diagnostic = only(source)
    assert (diagnostic.line, diagnostic.col) == (1, 1)
    assert diagnostic.message == (
        f"the pipeline file is {MAX_FILE_BYTES + 1:,} bytes; the limit is 1,048,576 bytes (1 MiB)"
    )
    assert 'run "./ci/build.sh"' in diagnostic.hint
    with pytest.raises(PipelineInvalid) as info:
        load(source, "f.kdl")
    assert info.value.diagnostics == [diagnostic]


def test_the_size_counts_bytes_not_characters() -> None:
    # Fewer characters than the limit, more bytes: refused.
    source = HEAD + "// " + "é" * (MAX_FILE_BYTES // 2) + "\n"
    assert len(source) < MAX_FILE_BYTES < len(source.encode())
    assert only(source).message.startswith(f"the pipeline file is {len(source.encode()):,} bytes")


def test_a_huge_file_is_refused_before_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    def never(*args: object) -> None:
        raise AssertionError("kdl-py was called")

    monkeypatch.setattr("controller.definition.kdl.kdl.parse", never)
    assert isinstance(parse("{" * (MAX_FILE_BYTES + 1), "f.kdl"), Diagnostic)


# --- nesting -----------------------------------------------------------------------------------


def nested(depth: int) -> str:
    """A stage whose block holds `depth - 1` more nested blocks: `depth` levels in all."""
    opens = "".join("    " * level + "a {\n" for level in range(1, depth))
    closes = "".join("    " * level + "}\n" for level in reversed(range(1, depth)))
    return 'pipeline "p"\nstage "s" {\n    run "x"\n' + opens + closes + "}\n"


def test_nesting_at_the_limit_reaches_the_parser_and_gets_ordinary_diagnostics() -> None:
    diagnostics = validate(nested(MAX_NESTING))
    assert diagnostics and all("nested" not in d.message for d in diagnostics)
    assert diagnostics[0].message == "unknown node 'a' in stage 's'"


def test_nesting_one_over_the_limit_points_at_the_brace() -> None:
    diagnostic = only(nested(MAX_NESTING + 1))
    # The 17th level opens on line 3 + 16 = 19, after `a ` indented by 16 levels.
    assert (diagnostic.line, diagnostic.col) == (3 + MAX_NESTING, 4 * MAX_NESTING + 3)
    assert diagnostic.message == "blocks are nested more than 16 deep here; the limit is 16"
    assert "one level" in diagnostic.hint


@pytest.mark.parametrize(
    "source",
    [
        "{" * 100_000,
        'pipeline "p"\n' + "a {" * 100_000,
        'pipeline "p"\nstage "s" {\n' + "a {\n" * 100_000 + "}\n" * 100_001,
    ],
)
def test_deep_nesting_never_reaches_the_recursive_parser(source: str) -> None:
    diagnostic = only(source)
    assert diagnostic.message.startswith("blocks are nested more than 16 deep")
    with pytest.raises(PipelineInvalid):
        load(source)


def test_nested_block_comments_count_too() -> None:
    diagnostic = only('pipeline "p"\n' + "/* " * 100_000)
    assert (diagnostic.line, diagnostic.col) == (2, 3 * MAX_NESTING + 1)
    assert diagnostic.message.startswith("block comments are nested more than 16 deep")
    balanced = HEAD + "/* " * MAX_NESTING + "*/ " * MAX_NESTING + "\n"
    assert validate(balanced) == []


@pytest.mark.parametrize(
    "junk",
    [
        '"' + "{" * 100 + '"',  # in a string
        '"\\"' + "{" * 100 + '"',  # after an escaped quote
        'r"' + "{" * 100 + '"',  # in a raw string
        'r##"' + '"#{' * 100 + '"##',  # in a raw string with hashes and a false end
    ],
)
def test_braces_in_strings_do_not_count(junk: str) -> None:
    source = f'pipeline "p"\nstage "s" {{ run {junk}; }}\n'
    assert validate(source) == []


def test_braces_in_comments_do_not_count() -> None:
    source = HEAD + "// " + "{" * 100 + "\n/* " + "{" * 100 + ' /* { */ */\n/- stage "t" { run "x"; }\n'
    assert validate(source) == []


@pytest.mark.parametrize("tail", ['"{{{', 'r#"{{{"', "/* {{{", "// {{{"])
def test_unterminated_strings_and_comments_end_the_scan(tail: str) -> None:
    assert source_problem(HEAD + tail + "{" * 100, "f.kdl") is None  # inside: nothing counts
    diagnostics = validate(HEAD + tail + "{" * 100)
    assert all("nested" not in d.message for d in diagnostics)


def test_the_nesting_scan_is_linear(monkeypatch: pytest.MonkeyPatch) -> None:
    # One regex search per interesting character, never a rescan: counted, not timed.
    searches = 0
    real = limits._INTERESTING

    class Counting:
        def search(self, string: str, pos: int) -> object:
            nonlocal searches
            searches += 1
            return real.search(string, pos)

    monkeypatch.setattr(limits, "_INTERESTING", Counting())
    source = 'stage "s" { run "a{b}c"; }\n' * 10_000
    assert source_problem(source, "f.kdl") is None
    assert searches == 10_000 * 4 + 1  # `{`, `"` (the string is skipped whole), `}`, `"`... and the end


# --- nodes ---------------------------------------------------------------------------------------


def many_nodes(count: int) -> str:
    """`count` nodes, one a line (the first line is a comment, so every node follows a line break):
    the pipeline, then stages of at most 1,000 run commands."""
    lines = ["// many nodes", 'pipeline "p"']
    left = count - 1
    while left:
        runs = min(left - 1, 1_000)
        lines += [f'stage "s{len(lines)}" {{'] + ['run "x"'] * runs + ["}"]
        left -= runs + 1
    return "\n".join(lines) + "\n"


def test_exactly_the_node_limit_passes_the_scan() -> None:
    source = many_nodes(MAX_NODES)
    assert len(source.encode()) <= MAX_FILE_BYTES
    assert source_problem(source, "f.kdl") is None


def test_one_node_over_the_limit_is_refused_before_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("controller.definition.kdl.kdl.parse", None)  # never reached
    source = many_nodes(MAX_NODES + 1)
    diagnostic = only(source)
    lines = source.splitlines()
    # The last node, just before the closing `}` of the last stage.
    assert (diagnostic.line, diagnostic.col) == (len(lines) - 1, 1)
    assert lines[diagnostic.line - 1] == 'run "x"'
    assert diagnostic.message == "more than 100,000 nodes in the file; this is where the next one starts"


def test_tiny_nodes_filling_the_file_are_refused_before_parsing() -> None:
    # 1 MiB of one-letter nodes took kdl-py 12-20 s; now a scan refuses the file at node 100,001.
    source = 'pipeline "p"\n' + "a\n" * ((MAX_FILE_BYTES - 20) // 2)
    diagnostic = only(source)
    assert (diagnostic.line, diagnostic.col) == (MAX_NODES + 2, 1)


def count_nodes(nodes: list[RawNode]) -> int:
    return sum(1 + count_nodes(node.children) for node in nodes)


@pytest.mark.parametrize(
    "source",
    [
        'pipeline "p"\nstage "a" { run "x"; }\nstage "b" {\n    run "y"\n    needs "a"\n}\n',
        '// c\npipeline "p" // trailing\n/* block\n comment */\nstage "a" {\n    run "a;b\nc"; run "d"\n}\n',
        'pipeline "p"; stage "a" { run r#"x\ny"#; env "A" "1"; }; trigger "manual"\n\n\n',
    ],
)
def test_the_node_estimate_matches_the_parsed_nodes(source: str) -> None:
    parsed = parse(source, "f.kdl")
    assert not isinstance(parsed, Diagnostic)
    actual = count_nodes(parsed[0])
    # The first node of the file follows no line break: the estimate may miss it, never more.
    assert actual - 1 <= limits._Scan(source).nodes <= actual


# --- stages and needs --------------------------------------------------------------------------


def test_a_pipeline_of_exactly_the_stage_limit_loads() -> None:
    pipeline = load(stages(MAX_STAGES))
    assert len(pipeline.stages) == MAX_STAGES


def test_one_stage_over_the_limit_is_one_diagnostic_at_that_stage() -> None:
    diagnostic = only(stages(MAX_STAGES + 1))
    assert (diagnostic.line, diagnostic.col) == (MAX_STAGES + 2, 1)
    assert diagnostic.message == "more than 10,000 stages in one pipeline; this is stage 10,001"
    assert "merge small stages" in diagnostic.hint


def needs_file(count: int) -> str:
    """Stage b needs a, written `count` times: 1,000 per line, the rest on a last line."""
    full, rest = divmod(count, 1_000)
    lines = ["    needs " + " ".join(['"a"'] * 1_000)] * full
    if rest:
        lines.append("    needs " + " ".join(['"a"'] * rest))
    return 'pipeline "p"\nstage "a" { run "x"; }\nstage "b" {\n    run "x"\n' + "\n".join(lines) + "\n}\n"


def test_exactly_the_needs_limit_is_accepted() -> None:
    assert load(needs_file(MAX_NEEDS)).stages[1].needs == ("a",)


def test_one_need_over_the_limit_is_one_diagnostic_at_its_node() -> None:
    diagnostic = only(needs_file(MAX_NEEDS + 1))
    assert (diagnostic.line, diagnostic.col) == (5 + MAX_NEEDS // 1_000, 11)
    assert diagnostic.message == "more than 50,000 needs in one pipeline (each name in needs counts)"


def test_needs_are_counted_across_stages_including_the_needs_property() -> None:
    source = needs_file(MAX_NEEDS) + 'stage "c" needs="a" { run "x"; }\n'
    diagnostic = only(source)
    assert (diagnostic.line, diagnostic.col) == (5 + MAX_NEEDS // 1_000 + 1, 11)  # at needs=
    assert diagnostic.message.startswith("more than 50,000 needs")


def test_triggers_limit() -> None:
    def source(count: int) -> str:
        return HEAD + "".join(f'trigger "cron" "{i % 60} {i // 60} * * *"\n' for i in range(count))

    assert len(load(source(MAX_TRIGGERS)).triggers) == MAX_TRIGGERS
    diagnostic = only(source(MAX_TRIGGERS + 5))
    assert (diagnostic.line, diagnostic.col) == (3 + MAX_TRIGGERS, 1)
    assert diagnostic.message == "more than 100 triggers in one pipeline"


# --- per stage ---------------------------------------------------------------------------------


def test_commands_per_stage_limit() -> None:
    runs = " ".join(['"x"'] * MAX_COMMANDS_PER_STAGE)
    at_limit = f'pipeline "p"\nstage "s" {{\n    run {runs}\n}}\n'
    assert len(load(at_limit).stages[0].commands) == MAX_COMMANDS_PER_STAGE
    over = f'pipeline "p"\nstage "s" {{\n    run {runs}\n    run "one more"\n    run "and another"\n}}\n'
    diagnostic = only(over)
    assert (diagnostic.line, diagnostic.col) == (4, 5)
    assert diagnostic.message == "more than 1,000 run commands in stage 's'"
    assert "./ci/steps.sh" in diagnostic.hint


@pytest.mark.parametrize("scope", ["top", "stage"])
def test_env_entries_limit(scope: str) -> None:
    def source(count: int) -> str:
        entries = [f'env "E{i}" "v"' for i in range(count)]
        if scope == "top":
            return 'pipeline "p"\n' + "\n".join(entries) + '\nstage "s" { run "x"; }\n'
        return 'pipeline "p"\nstage "s" {\n    run "x"\n' + "".join(f"    {e}\n" for e in entries) + "}\n"

    assert validate(source(MAX_ENV_ENTRIES)) == []
    diagnostic = only(source(MAX_ENV_ENTRIES + 2))
    if scope == "top":
        assert (diagnostic.line, diagnostic.col) == (2 + MAX_ENV_ENTRIES, 1)
        assert diagnostic.message == "more than 256 env entries at the top level"
    else:
        assert (diagnostic.line, diagnostic.col) == (4 + MAX_ENV_ENTRIES, 5)
        assert diagnostic.message == "more than 256 env entries in stage 's'"


def test_env_values_doubling_are_stopped_at_the_first_too_long() -> None:
    lines = ['env "A0" "xxxxxxxx"']
    lines += [f'env "A{i}" "${{env.A{i - 1}}}${{env.A{i - 1}}}"' for i in range(1, 40)]
    source = 'pipeline "p"\n' + "\n".join(lines) + '\nstage "s" { run "echo $A39"; }\n'
    diagnostics = validate(source)
    # A13 is 8 * 2**13 = 65,536 characters, the limit itself: A14 is the first over it, then each
    # one after it (their lengths are capped while counting, never computed in full).
    assert [(d.line, d.col) for d in diagnostics] == [(2 + i, 1) for i in range(14, 40)]
    assert diagnostics[0].message == (
        "env 'A14' at the top level is longer than 65,536 characters once its ${env.*} variables "
        "are substituted"
    )


def test_env_value_at_the_limit_is_accepted_and_one_more_is_not() -> None:
    half = "x" * (MAX_ENV_VALUE_CHARS // 2)
    source = (
        f'pipeline "p"\nenv "A" "{half}"\nstage "s" {{\n    run "x"\n'
        '    env "B" "${env.A}${env.A}"\n    env "C" "${env.B}!"\n}\n'
    )
    diagnostic = only(source)
    assert (diagnostic.line, diagnostic.col) == (6, 5)
    assert diagnostic.message.startswith("env 'C' in stage 's' is longer than 65,536 characters")


def test_names_limit() -> None:
    name = "p" * MAX_NAME_CHARS
    assert validate(f'pipeline "{name}"\nstage "s" {{ run "x"; }}\n') == []
    diagnostic = only(f'pipeline "{name}p"\nstage "s" {{ run "x"; }}\n')
    assert diagnostic.message == "the pipeline name is 256 characters; the limit is 255"
    env = "E" * MAX_NAME_CHARS
    assert validate(f'pipeline "p"\nenv "{env}" "v"\nstage "s" {{ run "x"; }}\n') == []
    diagnostic = only(f'pipeline "p"\nstage "s" {{\n    run "x"\n    env "{env}E" "v"\n}}\n')
    assert (diagnostic.line, diagnostic.col) == (4, 5)
    assert "is 256 characters; the limit is 255" in diagnostic.message


# --- at plan time ------------------------------------------------------------------------------


def test_plan_refuses_values_too_long_with_the_run_s_own_values() -> None:
    source = (
        'pipeline "p"\nstage "s" {\n    run "x"\n'
        '    env "M" "${git.message}${git.message}"\n    image "img:${git.short_sha}"\n}\n'
    )
    pipeline = load(source, "f.kdl")
    fits = plan(pipeline, RunContext(git=GitContext(message="m" * (MAX_ENV_VALUE_CHARS // 2))))
    assert len(fits.specs[0].env["M"]) == MAX_ENV_VALUE_CHARS
    with pytest.raises(PipelineInvalid) as info:
        plan(pipeline, RunContext(git=GitContext(message="m" * (MAX_ENV_VALUE_CHARS // 2 + 1))))
    [diagnostic] = info.value.diagnostics
    assert (diagnostic.file, diagnostic.line, diagnostic.col) == ("f.kdl", 2, 1)
    assert diagnostic.message == (
        "env 'M' of stage 's' is longer than 65,536 characters once its variables are substituted"
    )
