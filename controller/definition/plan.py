"""Planning: a validated pipeline + the run's context -> compiled `StageSpec`s.

This is where variables get their values. In `run` commands they become environment-variable
references (see interpolate.py), so nothing from outside the pipeline file becomes shell syntax.
Stages filtered out by `when` are reported separately so the runner marks them skipped.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from agent.contract.types import StageSpec, WorkspaceSource
from controller.definition import interpolate
from controller.definition.limits import MAX_ENV_VALUE_CHARS
from controller.definition.model import Diagnostic, Pipeline, PipelineInvalid, Stage


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


#: How a missing secret is provided to `buildit run` (the controller passes its own hint).
RUN_SECRET_HINT = "provide it, e.g. buildit run --secret {name}=VALUE"


def plan(
    pipeline: Pipeline,
    ctx: RunContext,
    secrets: Mapping[str, str] | None = None,
    secret_hint: str = RUN_SECRET_HINT,
) -> Plan:
    """Compile every stage for one run; raises `PipelineInvalid` when a used secret is missing.

    `secret_hint` tells how to provide a missing secret (`{name}` is replaced by its name): the
    way differs between `buildit run` and the controller.
    """
    secrets = dict(secrets or {})
    problems: list[Diagnostic] = []
    specs: list[StageSpec] = []
    skipped: set[str] = set()
    shared: _EnvState | None = None
    uses_stage = any(ref.context == "stage" for _, raw in pipeline.env for ref in interpolate.references(raw))
    top_secrets = _secret_names(_overridable(pipeline.env, ctx))
    if pipeline.stages and not uses_stage:
        # The pipeline-level env is then the same in every stage: resolve it once, not once per
        # stage (10,000 stages x 256 entries took 15 s).
        shared = _EnvState.of_trigger(ctx)
        shared.add(_overridable(pipeline.env, ctx), _values(pipeline, pipeline.stages[0], ctx), secrets)
    for stage in pipeline.stages:
        if stage.when_branch is not None and not fnmatch.fnmatchcase(ctx.git.branch, stage.when_branch):
            skipped.add(stage.name)
        spec, missing, oversized = _compile(pipeline, stage, ctx, secrets, shared, top_secrets)
        if stage.name in skipped:
            missing = []  # a stage that will not run needs no secrets (e.g. deploy off main)
        for what in oversized:
            problems.append(
                Diagnostic(
                    pipeline.file,
                    stage.location.line,
                    stage.location.col,
                    f"{what} of stage '{stage.name}' is longer than {MAX_ENV_VALUE_CHARS:,} characters "
                    "once its variables are substituted",
                    "values such as ${git.message} are inserted whole: use them in run commands, "
                    "where they stay environment variables, rather than in env values",
                )
            )
        for name in missing:
            problems.append(
                Diagnostic(
                    pipeline.file,
                    stage.location.line,
                    stage.location.col,
                    f"stage '{stage.name}' uses secret '{name}', which was not provided",
                    secret_hint.format(name=name),
                )
            )
        specs.append(spec)
    if problems:
        raise PipelineInvalid(problems)
    return Plan(tuple(specs), frozenset(skipped))


@dataclass
class _EnvState:
    """A stage's env entries resolved so far, in order, and what went wrong on the way.

    `secret_keys` are the entries whose value carries a secret; `missing` the secrets used but not
    provided; `oversized` the values too long to substitute (MAX_ENV_VALUE_CHARS).
    """

    resolved: dict[str, str] = field(default_factory=dict)
    secret_keys: set[str] = field(default_factory=set)
    missing: list[str] = field(default_factory=list)
    oversized: list[str] = field(default_factory=list)

    @classmethod
    def of_trigger(cls, ctx: RunContext) -> _EnvState:
        """The state a run starts from: the variables its trigger passed."""
        return cls(resolved=dict(ctx.env))

    def copy(self) -> _EnvState:
        """An independent copy: the shared pipeline-level state, continued by one stage."""
        return _EnvState(dict(self.resolved), set(self.secret_keys), list(self.missing), list(self.oversized))

    def resolve(
        self, text: str, values: Mapping[str, str], secrets: Mapping[str, str], what: str
    ) -> tuple[str, bool]:
        """Literal substitution for plain values; True when a secret ended up in the result.

        The length is worked out before substituting: values that use other values can double at
        each step, and a commit message can be long, so the result is bounded before it is built.
        """
        lookup = dict(values)
        has_secret = False
        refs = interpolate.references(text)
        for ref in refs:
            if ref.context == "env":
                lookup[ref.key] = self.resolved.get(ref.name, "")
                has_secret = has_secret or ref.name in self.secret_keys
            elif ref.context == "secrets":
                has_secret = True
                if ref.name in secrets:
                    lookup[ref.key] = secrets[ref.name]
                elif ref.name not in self.missing:
                    self.missing.append(ref.name)
        size = len(text) + sum(len(lookup[r.key]) - (r.end - r.start) for r in refs if r.key in lookup)
        if size > MAX_ENV_VALUE_CHARS:
            self.oversized.append(what)
            return "", has_secret
        return interpolate.substitute(text, lookup), has_secret

    def add(
        self, entries: Iterable[tuple[str, str]], values: Mapping[str, str], secrets: Mapping[str, str]
    ) -> None:
        """Resolve env entries in order; an entry may use the ones before it."""
        for key, raw in entries:
            value, has_secret = self.resolve(raw, values, secrets, f"env '{key}'")
            self.resolved[key] = value
            if has_secret:
                self.secret_keys.add(key)
            else:
                self.secret_keys.discard(key)


def _secret_names(entries: Iterable[tuple[str, str]]) -> frozenset[str]:
    """The secrets the env entries refer to directly."""
    return frozenset(
        ref.name
        for _, raw in entries
        if "secrets" in raw
        for ref in interpolate.references(raw)
        if ref.context == "secrets"
    )


def _overridable(entries: Iterable[tuple[str, str]], ctx: RunContext) -> list[tuple[str, str]]:
    """The file's env entries that no trigger variable replaces."""
    return [(key, raw) for key, raw in entries if key not in ctx.env]


def _compile(
    pipeline: Pipeline,
    stage: Stage,
    ctx: RunContext,
    secrets: dict[str, str],
    shared: _EnvState | None = None,
    top_secrets: frozenset[str] = frozenset(),
) -> tuple[StageSpec, list[str], list[str]]:
    """The stage's spec, the secrets it uses that were not provided, and the values too long to
    substitute (MAX_ENV_VALUE_CHARS; left empty in the spec, which is then refused).

    `shared` is the pipeline-level env already resolved, when it is the same for every stage.
    """
    values = _values(pipeline, stage, ctx)
    env: dict[str, str] = {"CI": "true", "BUILDIT": "true"}
    for key, value in values.items():
        context, _, name = key.partition(".")
        env[interpolate.env_name(context, name)] = value

    # Env entries in order (pipeline level, then the stage's); an entry whose value carries a
    # secret travels in `secrets` so it is masked and never shown as plain configuration.
    # The trigger's variables (ctx.env) win over the file's entries of the same name.
    if shared is not None:
        state = shared.copy()
        state.add(_overridable(stage.env, ctx), values, secrets)
    else:
        state = _EnvState.of_trigger(ctx)
        state.add(_overridable((*pipeline.env, *stage.env), ctx), values, secrets)
    resolved, secret_keys, missing = state.resolved, state.secret_keys, state.missing

    used_secrets: dict[str, str] = {}
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
    # A secret used only inside a longer env value ("Bearer ${secrets.T}") also travels on its own,
    # so the agent masks the bare value too, not only the whole entry (`echo ${AUTH#Bearer }`).
    if secret_keys:
        carried = set(used_secrets.values())
        for name in sorted(top_secrets | _secret_names(_overridable(stage.env, ctx))):
            if name in secrets and secrets[name] not in carried:
                used_secrets.setdefault(interpolate.env_name("secrets", name), secrets[name])
    image = state.resolve(stage.image, values, secrets, "the image")[0] if stage.image else None
    workdir = state.resolve(stage.workdir, values, secrets, "the workdir")[0] if stage.workdir else ""
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
        resources=stage.resources,
    )
    return spec, missing, state.oversized
