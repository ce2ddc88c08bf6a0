"""Planning: a validated pipeline + the run's context -> compiled `StageSpec`s.

This is where variables get their values. In `run` commands they become environment-variable
references (see interpolate.py), so nothing from outside the pipeline file becomes shell syntax.
Stages filtered out by `when` are reported separately so the runner marks them skipped.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass, field

from agent.contract.types import StageSpec, WorkspaceSource
from controller.pipeline import interpolate
from controller.pipeline.model import Diagnostic, Pipeline, PipelineInvalid, Stage


@dataclass(frozen=True)
class GitContext:
    """The commit a run builds. Values come from outside: they are data, never shell."""

    sha: str = ""
    branch: str = ""
    message: str = ""
    author: str = ""

    @property
    def short_sha(self) -> str:
        """First 8 hex digits, as shown in UIs."""
        return self.sha[:8]


@dataclass(frozen=True)
class RunContext:
    """Everything a plan needs to know about the run besides the pipeline itself."""

    git: GitContext = field(default_factory=GitContext)
    pipeline_id: str = "local"
    run_id: str = "local"
    run_number: int = 1
    source: WorkspaceSource | None = None
    #: Variables the trigger passed: in every stage's environment and `${env.NAME}`, over the file's own.
    env: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Plan:
    """Compiled stages in declaration order, and the names `when` filtered out for this run."""

    specs: tuple[StageSpec, ...]
    skipped: frozenset[str]

    @property
    def needs(self) -> dict[str, tuple[str, ...]]:
        """The dependency graph, for `Dag`."""
        return {spec.name: spec.needs for spec in self.specs}


def _values(pipeline: Pipeline, stage: Stage, ctx: RunContext) -> dict[str, str]:
    git = ctx.git
    return {
        "git.sha": git.sha,
        "git.short_sha": git.short_sha,
        "git.branch": git.branch,
        "git.message": git.message,
        "git.author": git.author,
        "pipeline.id": ctx.pipeline_id,
        "pipeline.name": pipeline.name,
        "run.id": ctx.run_id,
        "run.number": str(ctx.run_number),
        "stage.name": stage.name,
        "stage.index": str(stage.index),
    }


def plan(pipeline: Pipeline, ctx: RunContext, secrets: Mapping[str, str] | None = None) -> Plan:
    """Compile every stage for one run; raises `PipelineInvalid` when a used secret is missing."""
    secrets = dict(secrets or {})
    problems: list[Diagnostic] = []
    specs: list[StageSpec] = []
    skipped: set[str] = set()
    for stage in pipeline.stages:
        if stage.when_branch is not None and not fnmatch.fnmatchcase(ctx.git.branch, stage.when_branch):
            skipped.add(stage.name)
        spec, missing = _compile(pipeline, stage, ctx, secrets)
        if stage.name in skipped:
            missing = []  # a stage that will not run needs no secrets (e.g. deploy off main)
        for name in missing:
            problems.append(
                Diagnostic(
                    pipeline.file,
                    stage.location.line,
                    stage.location.col,
                    f"stage '{stage.name}' uses secret '{name}', which was not provided",
                    f"provide it, e.g. buildit run --secret {name}=VALUE",
                )
            )
        specs.append(spec)
    if problems:
        raise PipelineInvalid(problems)
    return Plan(tuple(specs), frozenset(skipped))


def _compile(
    pipeline: Pipeline, stage: Stage, ctx: RunContext, secrets: dict[str, str]
) -> tuple[StageSpec, list[str]]:
    values = _values(pipeline, stage, ctx)
    env: dict[str, str] = {"CI": "true", "BUILDIT": "true"}
    for key, value in values.items():
        context, _, name = key.partition(".")
        env[interpolate.env_name(context, name)] = value

    used_secrets: dict[str, str] = {}
    missing: list[str] = []

    def resolve(text: str, local_env: dict[str, str], secret_keys: set[str]) -> tuple[str, bool]:
        """Literal substitution for plain values; True when a secret ended up in the result."""
        lookup = dict(values)
        has_secret = False
        for ref in interpolate.references(text):
            if ref.context == "env":
                lookup[ref.key] = local_env.get(ref.name, "")
                has_secret = has_secret or ref.name in secret_keys
            elif ref.context == "secrets":
                has_secret = True
                if ref.name in secrets:
                    lookup[ref.key] = secrets[ref.name]
                elif ref.name not in missing:
                    missing.append(ref.name)
        return interpolate.substitute(text, lookup), has_secret

    # Env entries in order (pipeline level, then the stage's); an entry whose value carries a
    # secret travels in `secrets` so it is masked and never shown as plain configuration.
    resolved: dict[str, str] = dict(ctx.env)  # the trigger's variables win over entries of the same name
    secret_keys: set[str] = set()
    for key, raw in (*pipeline.env, *stage.env):
        if key in ctx.env:
            continue
        value, has_secret = resolve(raw, resolved, secret_keys)
        resolved[key] = value
        if has_secret:
            secret_keys.add(key)
        else:
            secret_keys.discard(key)

    commands: list[str] = []
    for command in stage.commands:
        for ref in interpolate.references(command):
            if ref.context == "secrets":
                if ref.name in secrets:
                    used_secrets[interpolate.env_name("secrets", ref.name)] = secrets[ref.name]
                elif ref.name not in missing:
                    missing.append(ref.name)
        commands.append(interpolate.to_shell(command))

    env.update({k: v for k, v in resolved.items() if k not in secret_keys})
    used_secrets.update({k: resolved[k] for k in secret_keys})
    image = resolve(stage.image, resolved, secret_keys)[0] if stage.image else None
    workdir = resolve(stage.workdir, resolved, secret_keys)[0] if stage.workdir else ""
    spec = StageSpec(
        name=stage.name,
        index=stage.index,
        commands=tuple(commands),
        image=image,
        env=env,
        secrets=used_secrets,
        needs=stage.needs,
        artifacts=stage.artifacts,
        timeout_s=stage.timeout_s,
        retries=stage.retries,
        labels=dict(stage.labels),
        workdir=workdir,
        source=ctx.source,
    )
    return spec, missing
