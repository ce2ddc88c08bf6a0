"""Artifact path rules, shared by the controller (uploads) and the agent (downloads)."""

from __future__ import annotations

import pytest

from agent.contract.paths import artifact_path_problem


@pytest.mark.parametrize(
    ("path", "problem"),
    [
        ("dist/app.whl", None),
        ("a b/c-d_e.f", None),
        ("", "artifact path is empty"),
        ("/etc/passwd", "is absolute"),
        ("../x", "contains '..'"),
        ("a/../../x", "contains '..'"),
        ("a//b", "is not normalised"),
        ("./a", "is not normalised"),
        ("a/", "is not normalised"),
        ("a\0b", "contains a NUL character"),
        ("x" * 5000, "is longer than 4096 bytes"),
    ],
)
def test_artifact_path_rules(path: str, problem: str | None) -> None:
    found = artifact_path_problem(path)
    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found
