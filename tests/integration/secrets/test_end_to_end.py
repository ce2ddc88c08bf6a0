"""Secrets end to end, with real processes on SQLite and PostgreSQL: `buildit controller`, `buildit
agent`, and the `buildit secret` / `buildit admin rotate-key` commands.

A pipeline that uses `${secrets.NAME}` runs on a real agent: the stage gets the value, its log
shows `***`, and the value is in no REST answer, no process output and no database row. A missing
secret fails the run saying how to set it; a stage queued across a controller restart still gets
its value; rotation works offline only, and afterwards the old key starts nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.fleet.harness import BUILDIT, Agent, Controller, wait_for
from tests.integration.secrets.rows import everything_stored

VALUE = "s3cr3t-V4lue-9q8w"
# The stage proves it got the value by its digest: the value itself appears nowhere in the pipeline.
DIGEST = hashlib.sha256(VALUE.encode()).hexdigest()
USES_SECRETS = (
    'pipeline "uses-secrets"\n'
    'env "AUTH" "Bearer ${secrets.API_TOKEN}"\n'
    'stage "show" {\n'
    '    run "echo token=${secrets.API_TOKEN}"\n'
    '    run "echo auth=$AUTH"\n'
    '    run "echo bare=${AUTH#Bearer }"\n'
    '    run "test $(printf %s \\"${secrets.API_TOKEN}\\" | sha256sum | cut -c1-64) = '
    + DIGEST
    + ' && echo the value arrived"\n'
    "}\n"
)


@pytest.fixture
def controller(tmp_path: Path, database_url: str) -> Iterator[Controller]:
    started = Controller(tmp_path, database_url).start()
    try:
        yield started
    finally:
        started.stop()


def buildit(controller: Controller, *args: str, stdin: str = "", env: dict[str, str] | None = None) -> Any:
    """Run the `buildit` command against the controller (as its admin, once it has one)."""
    signed_in = {"BUILDIT_TOKEN": key} if (key := getattr(controller, "api_key", "")) else {}
    return subprocess.run(
        [BUILDIT, *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        env={
            **os.environ,
            "BUILDIT_URL": f"http://127.0.0.1:{controller.http_port}",
            **signed_in,
            **(env or {}),
        },
    )


def start_agent(controller: Controller, tmp_path: Path, name: str = "solo") -> Agent:
    agent = Agent(tmp_path, controller, name)
    wait_for(lambda: any(a["status"] == "online" for a in controller.agents()), 30, "the agent online")
    return agent


def test_a_pipeline_gets_its_secret_in_the_lease_only_and_its_log_shows_stars(
    controller: Controller, tmp_path: Path, database_url: str
) -> None:
    done = buildit(controller, "secret", "set", "API_TOKEN", stdin=VALUE + "\n")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "set secret API_TOKEN (tenant-wide)" and VALUE not in done.stdout
    listed = buildit(controller, "secret", "list")
    assert listed.returncode == 0 and listed.stdout.startswith("API_TOKEN") and VALUE not in listed.stdout

    agent = start_agent(controller, tmp_path)
    try:
        pipeline = controller.create_pipeline(USES_SECRETS)
        number = controller.trigger(pipeline)
        run = controller.wait_run(pipeline, number)
        assert run["status"] == "succeeded", run
        log = controller.log(pipeline, number, "show")
        assert "token=***" in log and "auth=***" in log and "bare=***" in log
        assert "the value arrived" in log
        assert VALUE not in log
        paths = ("/api/v1/secrets", f"/api/v1/pipelines/{pipeline}/runs/{number}")
        answers = [controller.request("GET", path)[1] for path in paths]
        assert VALUE not in json.dumps(answers)
    finally:
        agent.stop()
    controller.stop()
    assert VALUE not in controller.proc.output if controller.proc else True
    assert VALUE not in agent.proc.output
    assert VALUE not in everything_stored(database_url)


def test_a_missing_secret_fails_the_run_saying_how_to_set_it(controller: Controller) -> None:
    pipeline = controller.create_pipeline(USES_SECRETS)
    number = controller.trigger(pipeline)
    run = controller.wait_run(pipeline, number)
    assert run["status"] == "error"
    assert "uses secret 'API_TOKEN', which was not provided" in run["error"]
    assert "buildit secret set API_TOKEN" in run["error"]


def test_a_stage_queued_across_a_controller_restart_still_gets_its_value(
    controller: Controller, tmp_path: Path
) -> None:
    status, _, _ = controller.request("PUT", "/api/v1/secrets/API_TOKEN", {"value": VALUE})
    assert status == 201
    pipeline = controller.create_pipeline(USES_SECRETS)
    number = controller.trigger(pipeline)  # no agent yet: the stage waits, queued
    controller.stop()
    controller.start()
    agent = start_agent(controller, tmp_path)
    try:
        run = controller.wait_run(pipeline, number)
        assert run["status"] == "succeeded", run
        assert "the value arrived" in controller.log(pipeline, number, "show")
    finally:
        agent.stop()


def test_the_rest_api_never_answers_with_a_value(controller: Controller) -> None:
    pipeline = controller.create_pipeline('pipeline "target"\nstage "s" { run "true"; }\n')
    answers: list[Any] = []

    def call(method: str, path: str, body: Any = None) -> tuple[int, Any]:
        status, answer, _ = controller.request(method, path, body)
        answers.append(answer)
        return status, answer

    assert call("PUT", "/api/v1/secrets/DB_PASSWORD", {"value": VALUE})[0] == 201
    assert call("PUT", "/api/v1/secrets/DB_PASSWORD", {"value": VALUE + "2"})[0] == 200
    status, scoped = call("PUT", "/api/v1/secrets/DB_PASSWORD", {"value": VALUE, "pipeline": "target"})
    assert status == 201 and scoped["scope"] == "pipeline" and scoped["pipeline"]["id"] == pipeline
    status, listed = call("GET", "/api/v1/secrets")
    assert status == 200 and [(s["name"], s["scope"]) for s in listed["secrets"]] == [
        ("DB_PASSWORD", "tenant"),
        ("DB_PASSWORD", "pipeline"),
    ]
    # Refusals: what is wrong, never the value.
    both = {"value": VALUE, "repository": "x", "pipeline": "y"}
    assert call("PUT", "/api/v1/secrets/DB_PASSWORD", both)[0] == 400
    assert call("PUT", "/api/v1/secrets/bad-name", {"value": VALUE})[0] == 400
    assert call("PUT", "/api/v1/secrets/DB_PASSWORD", {"value": VALUE, "pipeline": "nope"})[0] == 404
    assert call("PUT", "/api/v1/secrets/BIG", {"value": VALUE * 5000})[0] == 413
    assert call("PUT", "/api/v1/secrets/OK", {"value": 12345})[0] == 400
    assert call("DELETE", "/api/v1/secrets/DB_PASSWORD?pipeline=target")[0] == 204
    assert call("DELETE", "/api/v1/secrets/DB_PASSWORD?pipeline=target")[0] == 404
    assert call("DELETE", "/api/v1/secrets/DB_PASSWORD")[0] == 204
    assert call("GET", "/api/v1/secrets") == (200, {"secrets": []})
    assert VALUE not in json.dumps(answers)
    # Without credentials: refused (by the CSRF check or authentication) before anything is stored.
    anonymous = controller.request("PUT", "/api/v1/secrets/X", {"value": VALUE}, key="")
    assert anonymous[0] in (401, 403) and VALUE not in json.dumps(anonymous[1])
    assert controller.request("GET", "/api/v1/secrets", key="")[0] == 401
    schema = controller.request("GET", "/schema/openapi.json")[1]
    assert {"/api/v1/secrets", "/api/v1/secrets/{name}"} <= set(schema["paths"])


def test_the_cli_reads_values_from_a_file_or_stdin_and_removes_by_scope(
    controller: Controller, tmp_path: Path
) -> None:
    controller.create_pipeline('pipeline "target"\nstage "s" { run "true"; }\n')
    value_file = tmp_path / "value.txt"
    value_file.write_text("line one\nline two\n")
    from_file = ("--from-file", str(value_file))
    done = buildit(controller, "secret", "set", "CERT", "--pipeline", "target", *from_file)
    assert done.returncode == 0 and done.stdout.strip() == "set secret CERT (pipeline target)", done.stderr
    again = buildit(controller, "secret", "set", "CERT", "--pipeline", "target", stdin="new\n")
    assert again.stdout.strip() == "updated secret CERT (pipeline target)"
    empty = buildit(controller, "secret", "set", "EMPTY", stdin="")
    assert empty.returncode == 2 and "is empty" in empty.stderr
    both = buildit(controller, "secret", "set", "X", "--pipeline", "a", "--repository", "b", stdin="v")
    assert both.returncode == 2 and "not allowed with argument" in both.stderr
    missing = buildit(controller, "secret", "rm", "CERT")
    assert missing.returncode == 1 and "404: no secret 'CERT' tenant-wide" in missing.stderr
    assert "pass --repository or --pipeline" in missing.stderr
    removed = buildit(controller, "secret", "rm", "CERT", "--pipeline", "target")
    assert removed.returncode == 0 and removed.stdout.strip() == "removed secret CERT (pipeline target)"
    assert buildit(controller, "secret", "list").stdout.startswith("no secrets")


def test_rotate_key_refuses_a_running_controller_then_rotates_and_the_old_key_starts_nothing(
    controller: Controller, tmp_path: Path
) -> None:
    data = ["--data-dir", str(tmp_path / "data"), "--database-url", controller.database_url]
    assert controller.request("PUT", "/api/v1/secrets/API_TOKEN", {"value": VALUE})[0] == 201
    old_key = (tmp_path / "data" / "master.key").read_text().strip()

    busy = buildit(controller, "admin", "rotate-key", *data)
    assert busy.returncode == 1 and "a controller is running on" in busy.stderr
    assert "stop the controller first" in busy.stderr

    controller.stop()
    done = buildit(controller, "admin", "rotate-key", *data)
    assert done.returncode == 0, done.stderr
    assert "rotated the master key" in done.stdout and "1 value(s) re-encrypted" in done.stdout
    new_key = (tmp_path / "data" / "master.key").read_text().strip()
    assert new_key != old_key and new_key not in done.stdout + done.stderr
    assert sorted(p.name for p in (tmp_path / "data").glob("master.key*")) == ["master.key"]

    refused = subprocess.run(
        [BUILDIT, "controller", *data, "--http-port", "0", "--grpc-port", "0"],
        env={**controller.env, "BUILDIT_SECRET_KEY": old_key},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 1
    assert "the master key does not match the one this database was encrypted with" in refused.stderr
    assert "Traceback" not in refused.stderr and old_key not in refused.stderr

    controller.start()  # with the new master.key: the secret still reaches a stage
    agent = start_agent(controller, tmp_path)
    try:
        pipeline = controller.create_pipeline(USES_SECRETS)
        run = controller.wait_run(pipeline, controller.trigger(pipeline))
        assert run["status"] == "succeeded", run
    finally:
        agent.stop()


def test_rotate_key_refuses_a_controller_of_another_machine_on_the_same_postgresql(
    controller: Controller, tmp_path: Path, database_url: str
) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite has no sessions to count: the data directory's lock is the check there")
    elsewhere = tmp_path / "other-machine"
    elsewhere.mkdir()
    busy = buildit(
        controller, "admin", "rotate-key", "--data-dir", str(elsewhere), "--database-url", database_url
    )
    assert busy.returncode == 1
    assert "controller connection(s) to this database are open" in busy.stderr
    assert "stop every controller using it (on any machine) first" in busy.stderr


def test_the_data_dir_is_private(tmp_path: Path, database_url: str) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    data.chmod(0o755)
    if database_url.startswith("sqlite"):
        # The default place, as an older installation left it: readable by everyone.
        (data / "buildit.db").touch(mode=0o644)
        database_url = f"sqlite:///{data / 'buildit.db'}"
    controller = Controller(tmp_path, database_url).start()
    try:
        status, _, _ = controller.request("POST", "/api/v1/repos", {"url": str(_repo(tmp_path))})
        assert status == 201
    finally:
        controller.stop()
    mode = lambda path: stat.S_IMODE(path.stat().st_mode)  # noqa: E731
    assert mode(data) == 0o700
    assert mode(data / "master.key") == 0o600
    assert mode(data / "mirrors") == 0o700
    if database_url.startswith("sqlite"):
        assert mode(data / "buildit.db") == 0o600
        assert all(mode(p) == 0o600 for p in data.glob("buildit.db-*"))


def _repo(tmp_path: Path) -> Path:
    from tests.integration.triggers.gitrepos import make_repo

    return make_repo(tmp_path / "app", {".buildit.kdl": 'pipeline "app"\nstage "s" { run "true"; }\n'})
