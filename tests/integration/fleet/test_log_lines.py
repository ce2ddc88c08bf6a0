"""The one log line format, as real processes print it: a `buildit agent`'s lines about a stage name
its pipeline, run and stage; the controller's lines have the same shape."""

from __future__ import annotations

import re
from pathlib import Path

from tests.integration.fleet.harness import Agent, controller_with_agents, wait_for

PIPELINE = """\
pipeline "log-lines"

stage "build" {
    run "echo building"
}

stage "check" needs="build" {
    run "exit 3"
}
"""

#: `<date> <time>.<ms> <LEVEL> <logger>: <message>`
LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} (DEBUG|INFO |WARNING|ERROR|CRITICAL) [\w.]+: .+")


def test_agent_lines_about_a_stage_name_its_pipeline_run_and_stage(tmp_path: Path) -> None:
    with controller_with_agents(tmp_path, f"sqlite:///{tmp_path / 'buildit.db'}") as (controller, agents):
        agents.append(agent := Agent(tmp_path, controller, "a1"))
        pipeline = controller.create_pipeline(PIPELINE)
        controller.trigger(pipeline)
        number = controller.trigger(pipeline)
        assert controller.wait_run(pipeline, number)["status"] == "failed"

        def about(stage: str, run: int) -> list[str]:
            fields = f"  pipeline=log-lines run={run} stage={stage} attempt=1 lease="
            return [line for line in list(agent.proc.lines) if fields in line]

        wait_for(lambda: any("stage failed" in line for line in about("check", number)), 10, "the final line")
        for stage, outcome in (("build", "succeeded"), ("check", "failed")):
            lines = about(stage, number)
            assert any(": stage leased  " in line for line in lines), agent.proc.output
            assert any(f": stage {outcome}  " in line for line in lines), agent.proc.output
            assert all(LINE.fullmatch(line) for line in lines), lines
        assert about("build", 1), "run 1's lines name run 1"
        # The token given on the command line is called out (it shows in `ps`).
        assert "--registration-token shows in `ps`" in agent.proc.output
    assert controller.proc is not None
    logged = [line for line in controller.proc.lines if LINE.fullmatch(line)]
    assert any("controller.db.migrate: applied database migration" in line for line in logged), (
        controller.proc.output
    )
