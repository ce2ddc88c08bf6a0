"""Parsing and checking what a page sends over `/ws`; every problem becomes a clear error text."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from controller.json_depth import JsonTooDeep, check_json_depth

TOPICS = ("runs", "run", "agents")
MAX_TAG = 200
USAGE = (
    'send {"op":"watch","topic":"runs"|"agents"}, {"op":"watch","topic":"run","run_id":"<uuid>"}, '
    '{"op":"log","id":"<tag>","run_id":"<uuid>","stage":"<name>","attempt":<int>,"offset":<int>}, '
    '{"op":"unwatch",...} or {"op":"unlog","id":"<tag>"}'
)


class BadRequest(Exception):
    """A message the server cannot act on; `str()` is sent back as the error message."""


@dataclass(frozen=True)
class Watch:
    """`watch` / `unwatch` of a topic (`run_id` only for topic `run`)."""

    topic: str
    run_id: UUID | None
    stop: bool


@dataclass(frozen=True)
class FollowLog:
    """`log`: stream one stage attempt's log from a byte offset."""

    tag: str
    run_id: UUID
    stage: str
    attempt: int
    offset: int


@dataclass(frozen=True)
class StopLog:
    """`unlog`: stop the stream with this tag."""

    tag: str


Request = Watch | FollowLog | StopLog


def parse(text: str) -> Request:
    """The request in one text frame; BadRequest saying what is wrong and how to fix it."""
    try:
        check_json_depth(text)
        data = json.loads(text)
    except JsonTooDeep as exc:
        raise BadRequest(f"the message is refused: {exc}; {USAGE}") from None
    except ValueError as exc:
        raise BadRequest(f"the message is not JSON ({exc}); {USAGE}") from None
    if not isinstance(data, dict):
        raise BadRequest(f"the message must be a JSON object, got {type(data).__name__}; {USAGE}")
    op = data.get("op")
    if op in ("watch", "unwatch"):
        topic = data.get("topic")
        if topic not in TOPICS:
            raise BadRequest(f'"{op}": "topic" must be one of {", ".join(TOPICS)}, got {_show(topic)}')
        run_id = _uuid(data, "run_id") if topic == "run" else None
        return Watch(topic, run_id, op == "unwatch")
    if op == "log":
        tag = _tag(data)
        run_id = _uuid(data, "run_id")
        stage = data.get("stage")
        if not isinstance(stage, str) or not stage:
            raise BadRequest(f'"log": "stage" must be a stage name (non-empty string), got {_show(stage)}')
        attempt = _int(data, "attempt", 1, default=None)
        offset = _int(data, "offset", 0, default=0)
        assert attempt is not None
        return FollowLog(tag, run_id, stage, attempt, offset)
    if op == "unlog":
        return StopLog(_tag(data))
    raise BadRequest(f'unknown "op" {_show(op)}; {USAGE}')


def _tag(data: dict[str, Any]) -> str:
    tag = data.get("id")
    if not isinstance(tag, str) or not tag or len(tag) > MAX_TAG:
        raise BadRequest(
            f'"{data.get("op")}": "id" must be a non-empty string of at most {MAX_TAG} characters '
            f"(the client's tag for this log stream), got {_show(tag)}"
        )
    return tag


def _uuid(data: dict[str, Any], field: str) -> UUID:
    value = data.get(field)
    if isinstance(value, str):
        try:
            return UUID(value)
        except ValueError:
            pass
    raise BadRequest(f'"{data.get("op")}": "{field}" must be a run id (a UUID string), got {_show(value)}')


def _int(data: dict[str, Any], field: str, minimum: int, default: int | None) -> int:
    value = data.get(field, default)
    if value is None or isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise BadRequest(f'"{data.get("op")}": "{field}" must be an integer >= {minimum}, got {_show(value)}')
    return value


def _show(value: Any) -> str:
    """A value as the client sent it (JSON), shortened."""
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 80 else text[:77] + "..."
