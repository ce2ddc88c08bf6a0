"""plan(): variables get their values; outside data never becomes shell, secrets never plain env."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from agent.contract.types import StageSpec, WorkspaceSource
from controller.definition.model import PipelineInvalid
from controller.definition.plan import GitContext, Plan, RunContext, plan
from controller.definition.validate import load, validate

SHA = "0123456789abcdef0123456789abcdef01234567"


def ctx(**git: str) -> RunContext:
    values = {"sha": SHA, "branch": "main", "message": "fix things", "author": "Ada"}
    values.update(git)
    return RunContext(git=GitContext(**values), pipeline_id="pl-1", run_id="run-9", run_number=42)


def one_stage(body: str, top: str = "") -> str:
    inner = "".join(f"    {line}\n" for line in body.splitlines())
    return f'pipeline "demo"\n{top}stage "build" {{\n{inner}}}\n'


def compile_one(
    source: str, context: RunContext | None = None, secrets: dict[str, str] | None = None
) -> StageSpec:
    assert validate(source) == [], [d.format() for d in validate(source)]
    result = plan(load(source), context or ctx(), secrets)
    assert len(result.specs) == 1
    return result.specs[0]


# --- environment ---------------------------------------------------------------------------------


def test_builtin_environment() -> None:
    spec = compile_one(one_stage('run "make"'))
    assert spec.env == {
        "CI": "true",
        "BUILDIT": "true",
        "BUILDIT_GIT_SHA": SHA,
        "BUILDIT_GIT_SHORT_SHA": SHA[:8],
        "BUILDIT_GIT_BRANCH": "main",
        "BUILDIT_GIT_MESSAGE": "fix things",
        "BUILDIT_GIT_AUTHOR": "Ada",
        "BUILDIT_PIPELINE_ID": "pl-1",
        "BUILDIT_PIPELINE_NAME": "demo",
        "BUILDIT_RUN_ID": "run-9",
        "BUILDIT_RUN_NUMBER": "42",
        "BUILDIT_STAGE_NAME": "build",
        "BUILDIT_STAGE_INDEX": "0",
    }
    assert spec.secrets == {}


def test_stage_name_and_index_differ_per_stage() -> None:
    source = 'pipeline "p"\nstage "a" { run "x"; }\nstage "b" { run "y"; }\n'
    specs = plan(load(source), ctx()).specs
    assert [(s.env["BUILDIT_STAGE_NAME"], s.env["BUILDIT_STAGE_INDEX"]) for s in specs] == [
        ("a", "0"),
        ("b", "1"),
    ]
    assert [(s.name, s.index) for s in specs] == [("a", 0), ("b", 1)]


def test_short_sha_is_first_eight_characters() -> None:
    assert GitContext(sha="abcdef0123456789").short_sha == "abcdef01"
    assert GitContext().short_sha == ""


def test_env_values_are_substituted_literally() -> None:
    source = one_stage(
        'env "LABEL" "${pipeline.name}-${run.number}-${git.short_sha}"\n'
        'env "MSG" "m: ${git.message}"\n'
        'run "x"',
        top='env "REGISTRY" "reg/${pipeline.id}"\n',
    )
    spec = compile_one(source, ctx(message="$(id)"))
    assert spec.env["REGISTRY"] == "reg/pl-1"
    assert spec.env["LABEL"] == f"demo-42-{SHA[:8]}"
    assert spec.env["MSG"] == "m: $(id)"


def test_env_values_can_reference_earlier_env() -> None:
    source = one_stage('env "URL" "https://${env.HOST}/x"\nrun "x"', top='env "HOST" "example.org"\n')
    assert compile_one(source).env["URL"] == "https://example.org/x"


def test_stage_env_overrides_pipeline_env() -> None:
    source = one_stage('env "MODE" "stage"\nrun "x"', top='env "MODE" "global"\n')
    assert compile_one(source).env["MODE"] == "stage"


def test_env_forward_reference_is_not_silently_empty() -> None:
    # BUG: controller/definition/plan.py _compile resolves env entries strictly in order, so
    # `env "A" "${env.B}"` followed by `env "B" "b"` gives A == "" — yet validate() accepts the file
    # (validate.py checks ${env.X} against the set of all declared names, regardless of order).
    # Either validation must reject the forward reference or planning must resolve it; silently
    # exporting an empty value is neither.
    source = one_stage('env "A" "${env.B}"\nenv "B" "b"\nrun "x"')
    if validate(source):
        return  # rejected up front: acceptable
    assert compile_one(source).env["A"] == "b"


# --- commands: injection safety --------------------------------------------------------------------

HOSTILE = [
    '"; touch /tmp/pwned #',
    "$(touch /tmp/pwned)",
    "`touch /tmp/pwned`",
    "'; touch /tmp/pwned; echo '",
    "a\nb; touch /tmp/pwned",
    "${secrets.TOKEN}",
]


@pytest.mark.parametrize("message", HOSTILE)
def test_git_message_never_enters_command_text(message: str) -> None:
    spec = compile_one(one_stage('run "echo \\"${git.message}\\""'), ctx(message=message))
    assert spec.commands == ('echo "${BUILDIT_GIT_MESSAGE}"',)
    assert "pwned" not in spec.commands[0] and "touch" not in spec.commands[0]
    assert spec.env["BUILDIT_GIT_MESSAGE"] == message
    assert spec.secrets == {}


@pytest.mark.parametrize("field", ["branch", "author"])
def test_other_outside_values_never_enter_command_text(field: str) -> None:
    spec = compile_one(one_stage(f'run "echo ${{git.{field}}}"'), ctx(**{field: "$(touch /tmp/pwned)"}))
    assert spec.commands == (f"echo ${{BUILDIT_GIT_{field.upper()}}}",)
    assert spec.env[f"BUILDIT_GIT_{field.upper()}"] == "$(touch /tmp/pwned)"


def test_hostile_message_is_printed_not_executed_by_a_real_shell(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    message = f'"; touch {marker} # $(touch {marker}) `touch {marker}`'
    spec = compile_one(one_stage('run "echo \\"${git.message}\\""'), ctx(message=message))
    result = subprocess.run(
        ["/bin/sh", "-c", spec.commands[0]], env=spec.env, capture_output=True, text=True, check=True
    )
    assert result.stdout == message + "\n"
    assert not marker.exists()


def test_every_reference_kind_is_rewritten_in_commands() -> None:
    source = one_stage(
        'env "LOCAL" "1"\n'
        'run "echo ${git.sha} ${git.short_sha} ${pipeline.name} ${run.id} '
        '${stage.index} ${env.LOCAL} $HOME"\n'
        'run "second ${ git.branch }"'
    )
    spec = compile_one(source)
    assert spec.commands == (
        "echo ${BUILDIT_GIT_SHA} ${BUILDIT_GIT_SHORT_SHA} ${BUILDIT_PIPELINE_NAME} ${BUILDIT_RUN_ID} "
        "${BUILDIT_STAGE_INDEX} ${LOCAL} $HOME",
        "second ${BUILDIT_GIT_BRANCH}",
    )


# --- secrets ---------------------------------------------------------------------------------------


def all_env_text(spec: StageSpec) -> str:
    return "\n".join([*spec.env.keys(), *spec.env.values()])


def test_secret_in_command_is_passed_as_secret_env() -> None:
    spec = compile_one(
        one_stage('run "login --token ${secrets.TOKEN}"'), secrets={"TOKEN": "s3cr3t", "UNUSED": "u"}
    )
    assert spec.commands == ("login --token ${BUILDIT_SECRET_TOKEN}",)
    assert spec.secrets == {"BUILDIT_SECRET_TOKEN": "s3cr3t"}  # unused secrets are not handed out
    assert "s3cr3t" not in all_env_text(spec)
    assert "s3cr3t" not in "".join(spec.commands)


def test_env_carrying_a_secret_moves_to_secrets() -> None:
    source = one_stage(
        'env "DSN" "postgres://u:${secrets.DB}@db/app"\n'
        'env "DSN2" "${env.DSN}?ssl=1"\n'
        'env "PLAIN" "x"\n'
        'run "migrate ${env.DSN}"',
        top='env "TOK" "${secrets.T}"\n',
    )
    spec = compile_one(source, secrets={"DB": "pw", "T": "tok-value"})
    assert spec.secrets == {
        "TOK": "tok-value",
        "DSN": "postgres://u:pw@db/app",
        "DSN2": "postgres://u:pw@db/app?ssl=1",
        # Used only inside a longer value: also on its own, so the bare value is masked too.
        "BUILDIT_SECRET_DB": "pw",
    }
    assert "DSN" not in spec.env and "DSN2" not in spec.env and "TOK" not in spec.env
    assert spec.env["PLAIN"] == "x"
    assert spec.commands == ("migrate ${DSN}",)
    for value in ("pw", "tok-value"):
        assert value not in all_env_text(spec)
        assert value not in "".join(spec.commands)


def test_stage_override_decides_whether_an_env_entry_is_secret() -> None:
    # Global secret overridden by a plain stage value: plain.
    source = one_stage('env "K" "plain"\nrun "x"', top='env "K" "${secrets.S}"\n')
    spec = compile_one(source, secrets={"S": "hidden"})
    assert spec.env["K"] == "plain"
    assert "K" not in spec.secrets
    assert "hidden" not in all_env_text(spec)
    # Global plain value overridden by a stage secret: secret.
    source = one_stage('env "K" "${secrets.S}"\nrun "x"', top='env "K" "plain"\n')
    spec = compile_one(source, secrets={"S": "hidden"})
    assert spec.secrets == {"K": "hidden"}
    assert "K" not in spec.env


def test_secret_values_never_in_env_or_commands_across_stages() -> None:
    source = (
        'pipeline "p"\nenv "G" "${secrets.A}"\n'
        'stage "one" {\n    env "L" "${secrets.B}-${git.sha}"\n'
        '    run "use ${secrets.A} ${env.L} ${secrets.C}"\n}\n'
        'stage "two" needs="one" {\n    run "echo ${env.G}"\n}\n'
    )
    secrets = {"A": "alpha-secret", "B": "beta-secret", "C": "gamma-secret"}
    specs = plan(load(source), ctx(), secrets).specs
    for spec in specs:
        for value in secrets.values():
            assert value not in all_env_text(spec)
            assert value not in "".join(spec.commands)
    assert specs[0].secrets == {
        "BUILDIT_SECRET_A": "alpha-secret",
        "BUILDIT_SECRET_B": "beta-secret",
        "BUILDIT_SECRET_C": "gamma-secret",
        "G": "alpha-secret",
        "L": f"beta-secret-{SHA}",
    }
    assert specs[1].secrets == {"G": "alpha-secret"}


def test_missing_secret_raises_with_position_and_hint() -> None:
    source = (
        'pipeline "p"\nstage "a" { run "x"; }\n\n'
        '  stage "deploy" {\n    run "push ${secrets.TOKEN} ${secrets.TOKEN}"\n  }\n'
    )
    with pytest.raises(PipelineInvalid) as caught:
        plan(load(source, "ci.kdl"), ctx(), {"OTHER": "x"})
    (diag,) = caught.value.diagnostics
    assert (diag.file, diag.line, diag.col) == ("ci.kdl", 4, 3)
    assert diag.message == "stage 'deploy' uses secret 'TOKEN', which was not provided"
    assert diag.hint == "provide it, e.g. buildit run --secret TOKEN=VALUE"


def test_all_missing_secrets_are_reported_together() -> None:
    source = (
        'pipeline "p"\nenv "G" "${secrets.GLOBAL}"\n'
        'stage "a" {\n    env "E" "${secrets.IN_ENV}"\n    run "x ${secrets.IN_RUN}"\n}\n'
    )
    with pytest.raises(PipelineInvalid) as caught:
        plan(load(source), ctx())
    assert [d.message for d in caught.value.diagnostics] == [
        "stage 'a' uses secret 'GLOBAL', which was not provided",
        "stage 'a' uses secret 'IN_ENV', which was not provided",
        "stage 'a' uses secret 'IN_RUN', which was not provided",
    ]


def test_empty_secret_value_counts_as_provided() -> None:
    spec = compile_one(one_stage('run "x ${secrets.T}"'), secrets={"T": ""})
    assert spec.secrets == {"BUILDIT_SECRET_T": ""}


# --- when ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "branch", "skipped"),
    [
        ("main", "main", False),
        ("main", "develop", True),
        ("release/*", "release/1.2", False),
        ("release/*", "feature/x", True),
        ("v[0-9]*", "v2", False),
        ("Main", "main", True),
        ("main", "", True),
    ],
)
def test_when_branch_glob(pattern: str, branch: str, skipped: bool) -> None:
    source = (
        f'pipeline "p"\nstage "a" {{ run "x"; }}\n'
        f'stage "b" needs="a" {{\n    when branch="{pattern}"\n    run "y"\n}}\n'
    )
    result = plan(load(source), ctx(branch=branch))
    assert result.skipped == (frozenset({"b"}) if skipped else frozenset())
    # Skipped stages are still compiled, so the runner can report them and propagate.
    assert [s.name for s in result.specs] == ["a", "b"]


def test_plan_needs_is_the_graph() -> None:
    source = (
        'pipeline "p"\nstage "a" { run "x"; }\nstage "b" { run "x"; }\nstage "c" needs="a,b" { run "y"; }\n'
    )
    result = plan(load(source), ctx())
    assert isinstance(result, Plan)
    assert result.needs == {"a": (), "b": (), "c": ("a", "b")}


# --- fields ----------------------------------------------------------------------------------------


def test_stage_fields_are_carried_over() -> None:
    source = one_stage(
        'image "python:${env.PY}"\nenv "PY" "3.12"\nrun "x"\nartifacts "dist/*"\ntimeout "500ms"\nretries 3\n'
        'labels "os=linux"\nworkdir "out/${git.short_sha}"'
    )
    source_ref = WorkspaceSource(repo_url="file:///repo", commit_sha=SHA, ref="refs/heads/main")
    context = RunContext(git=GitContext(sha=SHA), source=source_ref)
    pipeline = load(source)
    spec = plan(pipeline, context).specs[0]
    assert spec.image == "python:3.12"
    assert spec.workdir == f"out/{SHA[:8]}"
    assert spec.artifacts == ("dist/*",)
    assert spec.timeout_s == 0.5
    assert spec.retries == 3
    assert spec.labels == {"os": "linux"}
    assert spec.labels is not pipeline.stage("build").labels
    assert spec.source is source_ref
    assert spec.needs == ()


def test_no_image_and_no_workdir_stay_empty() -> None:
    spec = compile_one(one_stage('run "x"'))
    assert spec.image is None
    assert spec.workdir == ""
    assert spec.source is None


# --- large pipelines -----------------------------------------------------------------------------


def test_a_1000_stage_chain_in_reverse_order_plans_in_file_order_and_runs_in_need_order() -> None:
    from controller.definition.dag import Dag

    lines = ['pipeline "big"']
    lines += [
        f'stage "s{i}"' + (f' needs="s{i - 1}"' if i else "") + ' { run "echo ${stage.name}"; }'
        for i in reversed(range(1_000))
    ]
    result = plan(load("\n".join(lines) + "\n"), ctx())
    assert [s.name for s in result.specs[:2]] == ["s999", "s998"]  # declaration order
    assert result.specs[0].needs == ("s998",) and result.specs[-1].needs == ()
    dag = Dag(result.needs)
    assert dag.order == [f"s{i}" for i in range(1_000)]
    assert dag.ready({}) == ["s0"]


def test_values_too_long_once_substituted_are_refused_before_they_are_built() -> None:
    top = 'env "A0" "xxxxxxxx"\n' + "".join(
        f'env "A{i}" "${{env.A{i - 1}}}${{env.A{i - 1}}}"\n' for i in range(1, 14)
    )
    pipeline = load(one_stage('run "x"\nenv "B" "${env.A13}${git.short_sha}"', top=top))  # 65,536 + 0
    with pytest.raises(PipelineInvalid) as info:
        plan(pipeline, ctx())  # the short sha makes it 8 characters too long
    assert [d.message for d in info.value.diagnostics] == [
        "env 'B' of stage 'build' is longer than 65,536 characters once its variables are substituted"
    ]
    assert len(plan(pipeline, ctx(sha="")).specs[0].env["B"]) == 65_536


def test_pipeline_level_env_is_resolved_once_not_once_per_stage(monkeypatch: pytest.MonkeyPatch) -> None:
    from controller.definition import interpolate

    scans = 0
    real = interpolate.references

    def counting(text: str) -> list[interpolate.Reference]:
        nonlocal scans
        scans += 1
        return real(text)

    monkeypatch.setattr(interpolate, "references", counting)
    top = "".join(f'env "E{i}" "v{i}-${{git.short_sha}}"\n' for i in range(50))
    stages = "".join(f'stage "s{i}" {{ run "echo $E1"; }}\n' for i in range(1_000))
    pipeline = load(f'pipeline "p"\n{top}{stages}')
    scans = 0
    result = plan(pipeline, ctx())
    assert all(spec.env["E49"] == "v49-01234567" for spec in result.specs)
    # 50 to see that no entry uses ${stage.*}, 50 to resolve them, one per stage for its command;
    # per stage it would be 50 * 1,000 more.
    assert scans == 50 + 50 + 1_000


def test_pipeline_level_env_using_stage_variables_is_resolved_per_stage() -> None:
    source = 'pipeline "p"\nenv "WHO" "${stage.name}"\nenv "TAG" "${env.WHO}-${stage.index}"\n'
    source += 'stage "a" { run "x"; }\nstage "b" {\n    run "x"\n    env "MINE" "${env.TAG}!"\n}\n'
    specs = plan(load(source), ctx()).specs
    assert [(s.env["WHO"], s.env["TAG"]) for s in specs] == [("a", "a-0"), ("b", "b-1")]
    assert specs[1].env["MINE"] == "b-1!"


def test_a_missing_secret_in_pipeline_level_env_is_reported_for_each_stage_that_runs() -> None:
    source = 'pipeline "p"\nenv "TOKEN" "${secrets.T}"\nstage "a" { run "x"; }\n'
    source += 'stage "b" { run "x"; }\nstage "c" {\n    run "x"\n    when branch="release"\n}\n'
    with pytest.raises(PipelineInvalid) as info:
        plan(load(source), ctx())
    assert [(d.line, d.message) for d in info.value.diagnostics] == [
        (3, "stage 'a' uses secret 'T', which was not provided"),
        (4, "stage 'b' uses secret 'T', which was not provided"),
    ]
    specs = plan(load(source), ctx(), {"T": "s3cret"}).specs
    assert all(s.secrets == {"TOKEN": "s3cret"} and "TOKEN" not in s.env for s in specs)


# --- trigger variables -----------------------------------------------------------------------------


def test_trigger_variables_override_the_files_env_and_feed_env_references() -> None:
    source = one_stage(
        'env "MODE" "stage"\nenv "URL" "https://${env.HOST}/x"\n'
        'image "img:${env.MODE}"\nrun "echo ${env.MODE}"',
        top='env "MODE" "file"\nenv "HOST" "example.org"\n',
    )
    context = RunContext(git=GitContext(sha=SHA, branch="main"), env={"MODE": "$(rm -rf /)", "NEW": "n"})
    spec = compile_one(source, context)
    assert spec.env["MODE"] == "$(rm -rf /)" and spec.env["NEW"] == "n"
    assert spec.env["URL"] == "https://example.org/x"  # untouched entries keep the file's values
    assert spec.image == "img:$(rm -rf /)"
    assert spec.commands == ("echo ${MODE}",)  # data for the shell, never shell syntax


def test_without_trigger_variables_the_files_env_stands() -> None:
    spec = compile_one(one_stage('env "MODE" "stage"\nrun "true"', top='env "MODE" "file"\n'))
    assert spec.env["MODE"] == "stage"
