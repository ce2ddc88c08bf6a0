"""agent.executors.environment: what a local stage inherits from the agent's environment."""

from __future__ import annotations

from agent.executors.environment import inherited_environment


def test_buildit_variables_and_values_holding_a_credential_are_dropped() -> None:
    environ = {
        "PATH": "/usr/bin",
        "BUILDIT_REGISTRATION_TOKEN": "enrol-123456",
        "BUILDIT_AGENT_STATE_DIR": "/var/lib/agent",
        "AUTH": "Bearer enrol-123456",
        "AGENT_TOKEN_COPY": "tok-abcdefgh",
        "SHORT": "abc",
        "LANG": "C.UTF-8",
    }
    assert inherited_environment(environ, ["enrol-123456", "tok-abcdefgh", "abc", ""]) == {
        "PATH": "/usr/bin",
        "SHORT": "abc",  # values under 8 characters are not searched for: too many false matches
        "LANG": "C.UTF-8",
    }
