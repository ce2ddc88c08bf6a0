"""`buildit validate` as a user runs it: exit codes and compiler-style diagnostics."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.integration.cli.conftest import buildit

ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = sorted((ROOT / "examples").glob("*.kdl"))
INVALID = sorted((ROOT / "examples" / "invalid").glob("*.kdl"))


def test_examples_exist() -> None:
    names = {p.name for p in EXAMPLES}
    assert {"hello.kdl", "dag.kdl", "variables.kdl", "artifacts.kdl", "docker.kdl"} <= names
    assert len(INVALID) >= 5


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_is_valid(path: Path) -> None:
    done = buildit("validate", str(path))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"{path}: ok"


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.name)
def test_every_invalid_example_fails_where_its_expect_line_says(path: Path) -> None:
    expect = re.match(r"// expect: (\d+):(\d+) (.+)", path.read_text().splitlines()[0])
    assert expect, f"{path.name} needs a first line '// expect: LINE:COL message'"
    line, col, fragment = expect.groups()
    done = buildit("validate", str(path))
    assert done.returncode == 1
    assert f"{path}:{line}:{col}: error: {fragment}" in done.stderr, done.stderr
    assert done.stdout == ""


def test_all_problems_reported_in_one_pass_with_hints(tmp_path: Path) -> None:
    bad = tmp_path / "bad.kdl"
    bad.write_text(
        'pipeline "p"\n'
        'stage "a" {\n'
        '    run "echo ${git.sah}"\n'
        '    imagee "x"\n'
        "}\n"
        'stage "b" needs="zz" { run "x"; }\n'
    )
    done = buildit("validate", str(bad))
    assert done.returncode == 1
    errors = [line for line in done.stderr.splitlines() if ": error: " in line]
    assert errors == [
        f"{bad}:3:15: error: unknown variable '${{git.sah}}' in stage 'a'",
        f"{bad}:4:5: error: unknown node 'imagee' in stage 'a'",
        f"{bad}:6:11: error: stage 'b' needs unknown stage 'zz'",
    ]
    assert "hint: did you mean 'sha'?" in done.stderr
    assert "hint: did you mean 'image'?" in done.stderr
    assert f"{bad}: 3 errors" in done.stderr


def test_one_line_block_pitfall_shows_the_fix(tmp_path: Path) -> None:
    bad = tmp_path / "p.kdl"
    bad.write_text('pipeline "p"\nstage "a" { run "x" }\n')
    done = buildit("validate", str(bad))
    assert done.returncode == 1
    assert f"{bad}:2:21: error: KDL syntax error" in done.stderr
    assert 'write: stage "a" { run "x"; }' in done.stderr


def test_several_files_and_quiet(tmp_path: Path) -> None:
    good = ROOT / "examples" / "hello.kdl"
    done = buildit("validate", "-q", str(good), str(good))
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    done = buildit("validate", str(good), str(INVALID[0]))
    assert done.returncode == 1
    assert f"{good}: ok" in done.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["validate"], "the following arguments are required: FILE"),
        (["validate", "/nonexistent/x.kdl"], "/nonexistent/x.kdl: no such file"),
        (["run"], "the following arguments are required: FILE"),
        (["run", "x.kdl", "--jobs", "0"], "expected a positive integer"),
        (["run", "x.kdl", "--executor", "podman"], "invalid choice: 'podman'"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
    ],
)
def test_usage_errors_exit_2(args: list[str], message: str) -> None:
    done = buildit(*args)
    assert done.returncode == 2
    assert message in done.stderr


def test_binary_file_is_a_usage_error(tmp_path: Path) -> None:
    junk = tmp_path / "junk.kdl"
    junk.write_bytes(b"\xff\xfe\x00garbage")
    done = buildit("validate", str(junk))
    assert done.returncode == 2
    assert "not UTF-8 text" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_deeply_nested_file_is_one_diagnostic_not_a_crash(tmp_path: Path) -> None:
    deep = tmp_path / "deep.kdl"
    deep.write_text('pipeline "p"\nstage "s" ' + "{" * 100_000 + "\n")
    done = buildit("validate", str(deep))
    assert done.returncode == 1
    assert f"{deep}:2:27: error: blocks are nested more than 16 deep here; the limit is 16" in done.stderr
    assert "Traceback" not in done.stderr and done.stderr.count("error:") == 1
