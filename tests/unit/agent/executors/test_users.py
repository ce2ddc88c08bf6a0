"""agent.executors.users: which users stages may run as."""

from __future__ import annotations

import os

import pytest

from agent.executors.users import resolve_run_as
from agent.settings import AgentSettings


def test_root_and_unknown_users_are_refused() -> None:
    with pytest.raises(ValueError, match="not root"):
        resolve_run_as("root")
    with pytest.raises(ValueError, match="no such user"):
        resolve_run_as("no-such-user-buildit")
    with pytest.raises(ValueError, match="no such user"):
        AgentSettings.from_sources(controller="ci:9090", env={"BUILDIT_AGENT_RUN_AS": "no-such-user-buildit"})


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can run stages as another user")
def test_a_user_by_name_or_uid() -> None:
    by_name = resolve_run_as("nobody")
    assert resolve_run_as(str(by_name.uid)) == by_name
    assert by_name.environment()["USER"] == "nobody"
    assert by_name.command("/usr/bin/setpriv")[1:3] == (f"--reuid={by_name.uid}", f"--regid={by_name.gid}")
