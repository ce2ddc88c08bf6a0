"""`${context.name}` variables: scanning, shell rewriting, literal substitution."""

from __future__ import annotations

import random
import re

import pytest

from controller.definition import interpolate
from controller.definition.interpolate import Reference, env_name, references, scan, substitute, to_shell

# --- env_name ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("context", "name", "expected"),
    [
        ("git", "sha", "BUILDIT_GIT_SHA"),
        ("git", "short_sha", "BUILDIT_GIT_SHORT_SHA"),
        ("git", "message", "BUILDIT_GIT_MESSAGE"),
        ("pipeline", "id", "BUILDIT_PIPELINE_ID"),
        ("run", "number", "BUILDIT_RUN_NUMBER"),
        ("stage", "index", "BUILDIT_STAGE_INDEX"),
        ("env", "MyVar", "MyVar"),
        ("secrets", "Token_1", "BUILDIT_SECRET_Token_1"),
    ],
)
def test_env_name(context: str, name: str, expected: str) -> None:
    assert env_name(context, name) == expected


# --- scan --------------------------------------------------------------------------------------


def test_scan_finds_references_with_offsets() -> None:
    text = "echo ${git.sha} and ${env.HOME_DIR}!"
    refs, problems = scan(text)
    assert problems == []
    assert refs == [Reference("git", "sha", 5, 15), Reference("env", "HOME_DIR", 20, 35)]
    assert [text[r.start : r.end] for r in refs] == ["${git.sha}", "${env.HOME_DIR}"]
    assert [r.key for r in refs] == ["git.sha", "env.HOME_DIR"]


def test_scan_tolerates_spaces_inside_braces() -> None:
    refs, problems = scan("${ git.sha }")
    assert problems == []
    assert refs == [Reference("git", "sha", 0, 12)]


def test_scan_ignores_plain_shell_variables() -> None:
    assert scan("echo $HOME $1 $$ plain text") == ([], [])


def test_every_known_variable_scans_clean() -> None:
    for context, names in interpolate.KNOWN.items():
        for name in names:
            refs, problems = scan(f"${{{context}.{name}}}")
            assert problems == [] and [r.key for r in refs] == [f"{context}.{name}"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("${git.}", "variable '${git.}' has no name after 'git.'"),
        ("${foo.bar}", "unknown variable context 'foo' in '${foo.bar}'"),
        ("${run.nope}", "unknown variable '${run.nope}'"),
        ("${env.1X}", "'1X' in '${env.1X}' is not a valid name"),
        ("${secrets.A-B}", "'A-B' in '${secrets.A-B}' is not a valid name"),
    ],
)
def test_scan_problems(text: str, message: str) -> None:
    refs, problems = scan("pre " + text)
    assert refs == []
    assert [(p.start, p.message) for p in problems] == [(4, message)]


def test_scan_hints() -> None:
    _, problems = scan("${git.sah} ${gti.sha} ${run.zzz}")
    assert [p.hint for p in problems] == [
        "did you mean 'sha'?",
        "did you mean 'git'?",
        "run.* has: id, number",
    ]


def test_scan_reports_unclosed_reference() -> None:
    refs, problems = scan("ok ${git.sha} then ${git.branch")
    assert [r.key for r in refs] == ["git.sha"]
    assert [(p.start, p.message) for p in problems] == [
        (19, "variable reference '${' is never closed with '}'")
    ]


@pytest.mark.parametrize("text", ["${HOME}", "${}", "${git}", "${.x}", "${VAR:-a.b}", "${#PATH}"])
def test_shell_braces_without_a_context_are_left_to_the_shell(text: str) -> None:
    """Only `${context.name}` is ours; `${HOME}` and friends are ordinary shell syntax."""
    assert scan("echo " + text) == ([], [])
    assert to_shell("echo " + text) == "echo " + text


def test_scan_reports_good_and_bad_together() -> None:
    refs, problems = scan("${git.sha} ${bad.x} ${env.X} ${foo.y}")
    assert [r.key for r in refs] == ["git.sha", "env.X"]
    assert [p.start for p in problems] == [11, 29]


def test_references_drops_problems() -> None:
    assert [r.key for r in references("${git.sha} ${bad} ${secrets.T}")] == ["git.sha", "secrets.T"]


# --- to_shell ----------------------------------------------------------------------------------


def test_to_shell_rewrites_every_reference_to_an_env_reference() -> None:
    text = "echo ${git.message} ${ git.sha } ${env.FOO} ${secrets.Tok} ${stage.index} $HOME"
    assert to_shell(text) == (
        "echo ${BUILDIT_GIT_MESSAGE} ${BUILDIT_GIT_SHA} ${FOO} "
        "${BUILDIT_SECRET_Tok} ${BUILDIT_STAGE_INDEX} $HOME"
    )


def test_to_shell_without_references_is_identity() -> None:
    text = 'echo "a b" | tr a b; $(date) `id` ${'
    assert to_shell(text) == text


# --- substitute --------------------------------------------------------------------------------


def test_substitute_replaces_known_keys_literally() -> None:
    values = {"git.sha": "abc", "git.message": '"; rm -rf / #'}
    assert substitute("v-${git.sha}-${ git.sha }", values) == "v-abc-abc"
    assert substitute("m=${git.message}", values) == 'm="; rm -rf / #'


def test_substitute_keeps_unknown_references_as_written() -> None:
    assert substitute("${nope.y} ${env.X}", {"git.sha": "abc"}) == "${nope.y} ${env.X}"


def test_substitute_is_single_pass() -> None:
    # A value that itself looks like a reference is data: it is not expanded again.
    values = {"git.message": "${secrets.TOKEN}", "secrets.TOKEN": "s3cr3t"}
    assert substitute("${git.message}", values) == "${secrets.TOKEN}"


def test_substitute_value_with_backslashes_is_not_a_regex_template() -> None:
    assert substitute("${git.author}", {"git.author": r"a\1\g<0>b"}) == r"a\1\g<0>b"


# --- linear scanning -------------------------------------------------------------------------

# The single regex the scanner replaced: same matches, but it rescans to the next `}` from every `${`.
OLD_REF = re.compile(r"\$\{\s*([A-Za-z_][A-Za-z0-9_]*\.[^}]*?)\s*\}")
PIECES = ["${", "}", "{", "$", "a", "env", ".", " ", "\t", "git", "sha", "_1", "\n", "-", "x$"]


@pytest.mark.parametrize("seed", range(300))
def test_scanner_finds_what_the_regex_found(seed: int) -> None:
    rng = random.Random(seed)
    text = "".join(rng.choice(PIECES) for _ in range(rng.randint(0, 30)))
    expected = [(m.start(), m.end(), m.group(1).strip()) for m in OLD_REF.finditer(text)]
    refs, _ = scan(text)
    valid = [(r.start, r.end) for r in refs]
    assert valid == [(s, e) for s, e, body in expected if (s, e) in valid]
    values = {body: f"<{body}>" for _, _, body in expected}
    assert substitute(text, values) == OLD_REF.sub(lambda m: values[m.group(1).strip()], text)
    assert substitute(text, {}) == text
    unclosed = [m.start() for m in re.finditer(r"\$\{[^}]*\Z", text)]
    problems = [p.start for p in scan(text)[1] if "never closed" in p.message]
    assert problems == unclosed


def test_many_unclosed_references_are_scanned_in_one_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    # Each `${env.a` with no `}` after it made the old regex scan to the end of the text: quadratic
    # (minutes for this text). The scanner tries each `${` once and looks for a `}` once.
    tries = 0
    real = interpolate._REF_START

    class Counting:
        def match(self, string: str, pos: int) -> re.Match[str] | None:
            nonlocal tries
            tries += 1
            return real.match(string, pos)

    monkeypatch.setattr(interpolate, "_REF_START", Counting())
    refs, problems = scan("${env.a" * 50_000)
    assert refs == [] and [(p.start, p.message) for p in problems] == [
        (0, "variable reference '${' is never closed with '}'")
    ]
    assert tries == 1  # no `}` anywhere: nothing after the first `${` can be a reference

    tries = 0
    text = "${env.a" * 50_000 + "}"
    refs, problems = scan(text)
    assert refs == [] and [p.start for p in problems] == [0]  # one reference, its name is not valid
    assert tries == 1
    assert to_shell(text) == "${" + text[6:-1] + "}"
