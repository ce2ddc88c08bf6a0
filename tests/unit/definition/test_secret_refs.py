"""Deferred plans: specs planned with secret references, filled in only for a lease."""

from __future__ import annotations

import json

import pytest

from controller.definition.model import PipelineInvalid
from controller.definition.plan import GitContext, RunContext, plan
from controller.definition.secret_refs import (
    SecretRef,
    fill,
    from_json,
    names,
    plan_deferred,
    to_json,
    used_secrets,
)
from controller.definition.validate import load

HINT = "set it with `buildit secret set {name}`"

SOURCE = """
pipeline "deploy"
env "AUTH" "Bearer ${secrets.TOKEN}"
env "FULL" "${env.AUTH} at ${git.branch}"
stage "plain" { run "echo ${git.sha}"; }
stage "ship" {
    env "MSG" "${git.message}"
    run "deploy --region ${secrets.REGION} --note \\"$MSG\\""
}
"""


def test_used_secrets_lists_every_name_referred_to() -> None:
    assert used_secrets(load(SOURCE, "f.kdl")) == {"TOKEN", "REGION"}
    assert used_secrets(load('pipeline "p"\nstage "s" { run "echo"; }\n', "f.kdl")) == frozenset()


def test_specs_hold_templates_not_values_and_fill_gives_what_plan_would_with_values() -> None:
    pipeline = load(SOURCE, "f.kdl")
    ctx = RunContext(git=GitContext(sha="a" * 40, branch="main", message="fix"))
    deferred = plan_deferred(pipeline, ctx, {"TOKEN", "REGION"}, HINT)
    assert all(spec.secrets == {} for spec in deferred.plan.specs)
    ship = deferred.templates["ship"]
    assert ship["AUTH"] == ("Bearer ", SecretRef("TOKEN"))
    assert ship["FULL"] == ("Bearer ", SecretRef("TOKEN"), " at main")
    assert ship["BUILDIT_SECRET_REGION"] == (SecretRef("REGION"),)
    assert names(ship) == {"TOKEN", "REGION"}

    values = {"TOKEN": "t0k", "REGION": "eu"}
    direct = plan(pipeline, ctx, values)
    for spec in direct.specs:
        assert fill(deferred.templates.get(spec.name, {}), values).secrets == spec.secrets
    # Everything else is what planning with the values gives.
    for with_refs, with_values in zip(deferred.plan.specs, direct.specs, strict=True):
        assert (with_refs.env, with_refs.commands) == (with_values.env, with_values.commands)


def test_text_from_outside_cannot_pass_for_a_reference() -> None:
    pipeline = load(
        'pipeline "p"\nenv "X" "${secrets.A}/${git.message}"\nstage "s" { run "echo"; }\n', "f.kdl"
    )
    forged = "\0deadbeef:B\0 and {'secret': 'B'}"
    deferred = plan_deferred(pipeline, RunContext(git=GitContext(message=forged)), {"A", "B"}, HINT)
    template = deferred.templates["s"]["X"]
    assert template == (SecretRef("A"), "/" + forged)
    filled = fill(deferred.templates["s"], {"A": "a", "B": "never"}).secrets
    assert filled == {"X": "a/" + forged, "BUILDIT_SECRET_A": "a"}


def test_a_missing_secret_is_a_diagnostic_with_the_given_hint() -> None:
    with pytest.raises(PipelineInvalid) as caught:
        plan_deferred(load(SOURCE, "f.kdl"), RunContext(), {"TOKEN"}, HINT)
    messages = [d.format() for d in caught.value.diagnostics]
    assert any("uses secret 'REGION'" in m and "buildit secret set REGION" in m for m in messages)
    assert not any("'TOKEN'" in m for m in messages)


def test_fill_reports_missing_and_oversized_values() -> None:
    templates = {"A": ("x=", SecretRef("BIG")), "B": (SecretRef("GONE"),)}
    assert fill(templates, {"BIG": "y"}).missing == ("GONE",)
    filled = fill(templates, {"BIG": "y" * 65536, "GONE": "z"})
    assert filled.oversized == ("A",) and filled.secrets == {}
    assert fill(templates, {"BIG": "y", "GONE": "z"}).secrets == {"A": "x=y", "B": "z"}


def test_templates_round_trip_through_json_and_old_specs_have_none() -> None:
    templates = {"AUTH": ("Bearer ", SecretRef("TOKEN"), ""), "X": (SecretRef("A"), SecretRef("B"))}
    assert from_json(json.loads(json.dumps(to_json(templates)))) == templates
    assert from_json(None) == {} and from_json({}) == {}
