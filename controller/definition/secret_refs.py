"""Plans whose secret values are filled in later: when a stage is leased, never when it is stored.

The controller plans a run when it is triggered, but a secret's value must exist only inside the
lease of the stage that uses it (not in the run's rows, not in memory for the run's lifetime, and
again after a controller restart). So the controller plans with *references*: each secret a stage
may use is planned as a marker, and every value of the stage's `secrets` map becomes a template,
a sequence of literal text and `SecretRef`s (`env "AUTH" "Bearer ${secrets.TOKEN}"` gives
`("Bearer ", SecretRef("TOKEN"))`). Templates hold names only; `fill` puts the values in.

The markers carry a random nonce chosen per plan, so text from outside (a commit message in an
env value) can never pass for one. Secrets cannot appear in a stage's image or workdir
(validation refuses them), so markers only ever land in `secrets` values.
"""

from __future__ import annotations

import re
import secrets as pysecrets
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from controller.definition import interpolate
from controller.definition.limits import MAX_ENV_VALUE_CHARS
from controller.definition.model import Pipeline
from controller.definition.plan import Plan, RunContext, plan


@dataclass(frozen=True, slots=True)
class SecretRef:
    """A secret's value, by name, inside a template."""

    name: str


Part = str | SecretRef
#: A `secrets` value of a stage spec, with its secrets still to be filled in.
Template = tuple[Part, ...]
#: A stage's `secrets` map in template form: env name -> template.
Templates = Mapping[str, Template]


@dataclass(frozen=True)
class DeferredPlan:
    """A plan whose specs carry no secret values, and each stage's `secrets` as templates."""

    plan: Plan
    templates: Mapping[str, Templates]


def used_secrets(pipeline: Pipeline) -> frozenset[str]:
    """Every secret name the pipeline refers to (env values and commands, any stage)."""
    texts: list[str] = [raw for _, raw in pipeline.env]
    for stage in pipeline.stages:
        texts.extend(raw for _, raw in stage.env)
        texts.extend(stage.commands)
    return frozenset(
        ref.name
        for text in texts
        if "secrets" in text
        for ref in interpolate.references(text)
        if ref.context == "secrets"
    )


def plan_deferred(
    pipeline: Pipeline, ctx: RunContext, available: Collection[str], secret_hint: str
) -> DeferredPlan:
    """Plan with the `available` secrets as references; a used secret not available is a
    `PipelineInvalid` diagnostic with `secret_hint`, as `plan` reports it."""
    nonce = pysecrets.token_hex(12)
    markers = {name: f"\0{nonce}:{name}\0" for name in available}
    compiled = plan(pipeline, ctx, markers, secret_hint)
    if not markers:
        return DeferredPlan(compiled, {})
    pattern = re.compile(f"\0{nonce}:([A-Za-z_][A-Za-z0-9_]*)\0")
    specs = []
    templates: dict[str, Templates] = {}
    for spec in compiled.specs:
        if spec.secrets:
            templates[spec.name] = {key: _template(value, pattern) for key, value in spec.secrets.items()}
            spec = replace(spec, secrets={})
        specs.append(spec)
    return DeferredPlan(Plan(tuple(specs), compiled.skipped), templates)


def _template(value: str, pattern: re.Pattern[str]) -> Template:
    parts: list[Part] = []
    pos = 0
    for match in pattern.finditer(value):
        if match.start() > pos:
            parts.append(value[pos : match.start()])
        parts.append(SecretRef(match.group(1)))
        pos = match.end()
    if pos < len(value):
        parts.append(value[pos:])
    return tuple(parts)


def names(templates: Templates) -> frozenset[str]:
    """The secrets a stage's templates need."""
    return frozenset(
        part.name for template in templates.values() for part in template if isinstance(part, SecretRef)
    )


@dataclass(frozen=True)
class Filled:
    """A stage's `secrets` map with values, or what kept it from being filled."""

    secrets: dict[str, str]
    missing: tuple[str, ...] = ()
    oversized: tuple[str, ...] = ()


def fill(templates: Templates, values: Mapping[str, str]) -> Filled:
    """The `secrets` map of a lease: every template with its secrets' values.

    `missing` names the secrets without a value (deleted since the run was planned), `oversized`
    the env names whose value grew past MAX_ENV_VALUE_CHARS once filled in.
    """
    missing = sorted(names(templates) - values.keys())
    if missing:
        return Filled({}, missing=tuple(missing))
    filled: dict[str, str] = {}
    oversized: list[str] = []
    for key, template in templates.items():
        text = "".join(values[part.name] if isinstance(part, SecretRef) else part for part in template)
        if len(text) > MAX_ENV_VALUE_CHARS:
            oversized.append(key)
        filled[key] = text
    if oversized:
        return Filled({}, oversized=tuple(oversized))
    return Filled(filled)


def to_json(templates: Templates) -> dict[str, list[Any]]:
    """Templates as stored (JSON): literal parts as strings, references as `{"secret": NAME}`."""
    return {
        key: [{"secret": part.name} if isinstance(part, SecretRef) else part for part in template]
        for key, template in templates.items()
    }


def from_json(data: object) -> dict[str, Template]:
    """The inverse of `to_json`; anything else (a spec stored before templates existed) gives none."""
    if not isinstance(data, dict):
        return {}
    templates: dict[str, Template] = {}
    for key, parts in data.items():
        if isinstance(parts, list):
            templates[str(key)] = tuple(_part(part) for part in parts)
    return templates


def _part(part: object) -> Part:
    if isinstance(part, dict):
        return SecretRef(str(part.get("secret", "")))
    return str(part)


def describe(names_: Iterable[str]) -> str:
    """Secret names for a message: 'A', 'B' and 'C'."""
    quoted = [f"'{name}'" for name in sorted(names_)]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " and " + quoted[-1]
