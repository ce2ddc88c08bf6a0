"""The shared validation helpers: hints that stay short, env names, expanded env lengths."""

from __future__ import annotations

from controller.definition.grammar import (
    LISTED_CHOICES,
    did_you_mean,
    env_entry_problem,
    expanded_length,
    listing,
)
from controller.definition.limits import MAX_ENV_VALUE_CHARS


def test_did_you_mean_suggests_the_closest_choice() -> None:
    assert did_you_mean("imgae", ["image", "run"], "allowed") == "did you mean 'image'?"
    assert did_you_mean("zzz", ["run", "image"], "allowed") == "allowed: image, run"


def test_listing_is_cut_after_a_few_names() -> None:
    names = [f"n{i:03}" for i in range(100)]
    hint = listing(names, "stages")
    assert hint.startswith("stages: n000, n001, ") and hint.endswith("n019 and 80 more")
    assert hint.count(",") == LISTED_CHOICES - 1
    assert listing(names[:3], "stages", total=1_500) == "stages: n000, n001, n002 and 1,497 more"
    assert listing([], "stages") == "stages: "


def test_env_entry_problems() -> None:
    assert env_entry_problem("GOOD_1", "") is None
    assert env_entry_problem("1BAD", " in stage 's'") == (
        "env name '1BAD' in stage 's' is not a valid variable name",
        "use letters, digits and '_', not starting with a digit",
    )
    assert env_entry_problem("BUILDIT_X", "") == (
        "env name 'BUILDIT_X' is reserved",
        "BUILDIT_* names are set by BuildIt",
    )
    message, _ = env_entry_problem("A" * 300, "") or ("", "")
    assert message.endswith("is 300 characters; the limit is 255")


def test_expanded_length_counts_env_values_and_not_the_references() -> None:
    lengths = {"A": 10, "B": 3}
    assert expanded_length("x${env.A}y${env.B}", lengths) == 15
    assert expanded_length("${git.message}", lengths) == 0  # known only when a run is planned
    assert expanded_length("${env.UNDECLARED}!", lengths) == 1
    assert expanded_length("${env.A}" * 10, {"A": MAX_ENV_VALUE_CHARS}) == MAX_ENV_VALUE_CHARS + 1
