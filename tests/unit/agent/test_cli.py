"""agent.cli: where the registration token comes from (never only argv)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from agent.cli import _registration_token, add_arguments


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(argv))


def test_the_token_file_gives_its_first_line(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("  s3cret-token  \nignored\n")
    assert _registration_token(parse("--registration-token-file", str(tmp_path / "token"))) == "s3cret-token"


def test_without_either_flag_the_environment_decides() -> None:
    assert _registration_token(parse()) is None
    assert _registration_token(parse("--registration-token", "t")) == "t"


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "No such file"), ("\n", "is empty: write the token on its first line")],
)
def test_a_missing_or_empty_file_is_refused_naming_it(
    tmp_path: Path, content: str | None, message: str
) -> None:
    path = tmp_path / "token"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ValueError, match=message) as refused:
        _registration_token(parse("--registration-token-file", str(path)))
    assert str(path) in str(refused.value)


def test_both_flags_are_refused(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("a")
    args = parse("--registration-token", "b", "--registration-token-file", str(tmp_path / "token"))
    with pytest.raises(ValueError, match="give the registration token once"):
        _registration_token(args)
