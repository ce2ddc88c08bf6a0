"""The agent's state file: private, atomic, and loud when it is unusable."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from agent.state import AgentState, StateError, clear_state, load_state, save_state

STATE = AgentState(agent_id="a-1", agent_token="tok", controller="ci:9090", heartbeat_interval_ms=500)


def test_round_trip_with_private_permissions(tmp_path: Path) -> None:
    state_dir = tmp_path / "nested" / "state"
    old = os.umask(0o022)
    try:
        save_state(state_dir, STATE)
    finally:
        os.umask(old)
    assert load_state(state_dir) == STATE
    assert stat.S_IMODE((state_dir / "agent.json").stat().st_mode) == 0o600
    assert stat.S_IMODE(state_dir.stat().st_mode) == 0o700
    assert json.loads((state_dir / "agent.json").read_text())["agent_token"] == "tok"


def test_overwrite_is_atomic_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    save_state(tmp_path, STATE)
    save_state(tmp_path, AgentState("a-2", "tok2", "ci:9090"))
    assert load_state(tmp_path) == AgentState("a-2", "tok2", "ci:9090")
    assert [p.name for p in tmp_path.iterdir()] == ["agent.json"]


def test_existing_permissive_file_is_replaced_by_a_private_one(tmp_path: Path) -> None:
    (tmp_path / "agent.json").write_text("{}")
    os.chmod(tmp_path / "agent.json", 0o644)
    save_state(tmp_path, STATE)
    assert stat.S_IMODE((tmp_path / "agent.json").stat().st_mode) == 0o600


def test_absent_state_is_none(tmp_path: Path) -> None:
    assert load_state(tmp_path / "missing") is None


def test_clear_state(tmp_path: Path) -> None:
    save_state(tmp_path, STATE)
    clear_state(tmp_path)
    clear_state(tmp_path)  # idempotent
    assert load_state(tmp_path) is None


@pytest.mark.parametrize(
    "content",
    ["not json", "[]", '{"agent_id": "x"}', '{"agent_id": "", "agent_token": "t", "controller": "c:1"}'],
)
def test_malformed_state_says_how_to_recover(tmp_path: Path, content: str) -> None:
    (tmp_path / "agent.json").write_text(content)
    with pytest.raises(StateError, match="delete it to register this agent again"):
        load_state(tmp_path)


def test_older_state_without_heartbeat_hint_loads(tmp_path: Path) -> None:
    (tmp_path / "agent.json").write_text('{"agent_id": "a", "agent_token": "t", "controller": "c:1"}')
    assert load_state(tmp_path) == AgentState("a", "t", "c:1", 0)
