"""Secret masking end to end: a real local stage prints a secret in the ways that used to leak it.

The agent runs against the fake controller; what the fake stored is what a user would read. Every
check looks at the stored lines joined back together too, so a secret cut into two lines (the
64 KiB line cut) counts as leaked.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from agent.contract.types import StageStatus
from tests.integration.agent.fake_controller import FakeController
from tests.integration.agent.harness import running_agent, serving, spec

pytestmark = pytest.mark.timeout(60)

SECRET = "hunter2-Zq3v9/X0+Jr"
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)")


async def stored_output(fake: FakeController, state_dir: Path, *commands: str) -> list[str]:
    async with running_agent(fake, state_dir) as (_agent, _task):
        await serving(fake)
        lease = fake.push_lease(spec(*commands, secrets={"S": SECRET}))
        await fake.wait_for(lambda: fake.final_update(lease), timeout=30)
    final = fake.final_update(lease)
    assert final is not None and final.status is StageStatus.SUCCEEDED, (final, fake.lines(lease)[-5:])
    return [line for line in fake.lines(lease) if not line.startswith("$ ")]


def assert_hidden(lines: list[str], *forms: str) -> None:
    for text in ("\n".join(lines), "".join(lines), _ANSI.sub("", "".join(lines))):
        for form in forms:
            assert form not in text, f"{form!r} leaked"


async def test_a_value_printed_in_pieces_across_output_chunks_is_masked(
    fake: FakeController, tmp_path: Path
) -> None:
    lines = await stored_output(
        fake, tmp_path, "printf 'key=hunter2-Z'; sleep 0.2; printf 'q3v9/X0+'; sleep 0.2; printf 'Jr!\\n'"
    )
    assert lines == ["key=***!"]


async def test_a_value_straddling_the_64_kib_line_cut_is_masked(fake: FakeController, tmp_path: Path) -> None:
    # The secret starts 5 bytes before the cut: each half alone looks harmless.
    lines = await stored_output(
        fake, tmp_path, "head -c 65531 /dev/zero | tr '\\0' x; printf '%s tail\\n' \"$S\"; echo after"
    )
    assert_hidden(lines, SECRET, SECRET[:8], SECRET[-8:])
    assert "".join(lines[:-1]) == "x" * 65531 + "*** tail"
    assert lines[-1] == "after"


async def test_an_escape_sequence_inside_the_value_does_not_reveal_it(
    fake: FakeController, tmp_path: Path
) -> None:
    lines = await stored_output(
        fake,
        tmp_path,
        "printf 'a hunter2-Zq3v9\\033[0m/X0+Jr b\\n'",
        "printf 'hunter2-\\033[1;31mZq3v9/X0\\033]8;;http://x\\033\\\\+Jr\\n'",
    )
    assert_hidden(lines, SECRET)
    assert [_ANSI.sub("", line) for line in lines] == ["a *** b", "***"]
    assert "\x1b[0m" in lines[0]  # the terminal's state is kept, the value is not


async def test_encoded_forms_of_the_value_are_masked(fake: FakeController, tmp_path: Path) -> None:
    prelude = 'import base64, json, os, urllib.parse as u; s = os.environ["S"]'

    def py(expression: str) -> str:
        return f"python3 -c '{prelude}; print({expression})'"

    lines = await stored_output(
        fake,
        tmp_path,
        'printf %s "$S" | base64',
        'printf "%s\\n" "$S" | base64',
        py("base64.urlsafe_b64encode(s.encode()).decode()"),
        py('base64.b64encode(s.encode()).decode().rstrip("=")'),
        py('base64.b64encode(b"x" + s.encode() + b"y").decode()'),
        py('"?t=" + u.quote(s, safe="")'),
        py('"?t=" + u.quote_plus(s)'),
        py('json.dumps({"t": s})'),
    )
    import base64
    import json
    import urllib.parse

    raw = SECRET.encode()
    forms = [
        base64.b64encode(raw).decode().rstrip("="),
        base64.urlsafe_b64encode(raw).decode().rstrip("="),
        base64.b64encode(b"x" + raw + b"y").decode()[4:20],
        urllib.parse.quote(SECRET, safe=""),
        urllib.parse.quote_plus(SECRET),
        json.dumps(SECRET)[1:-1],
    ]
    assert_hidden(lines, SECRET, *forms)
    assert lines[-1] == '{"t": "***"}'


@pytest.mark.docker
async def test_a_container_stage_is_masked_across_the_line_cut_too(
    fake: FakeController, tmp_path: Path, docker_image: str
) -> None:
    from agent.executors.registry import build_executors

    executors = build_executors("docker", network="none")
    try:
        async with running_agent(fake, tmp_path, executors=executors) as (_agent, _task):
            await serving(fake)
            command = "head -c 65533 /dev/zero | tr '\\0' x; printf '%s tail\\n' \"$S\"; printf 'x\\033[0m'"
            lease = fake.push_lease(spec(command, image=docker_image, secrets={"S": SECRET}))
            await fake.wait_for(lambda: fake.final_update(lease), timeout=60)
    finally:
        await executors.close()
    lines = [line for line in fake.lines(lease) if not line.startswith("$ ")]
    assert_hidden(lines, SECRET, SECRET[:6], SECRET[-6:])
    assert "".join(lines) == "x" * 65533 + "*** tail" + "x\x1b[0m"


async def test_a_value_too_short_to_mask_is_said_in_the_log(fake: FakeController, tmp_path: Path) -> None:
    async with running_agent(fake, tmp_path) as (_agent, _task):
        await serving(fake)
        lease = fake.push_lease(spec('echo "pin $PIN"', secrets={"PIN": "42", "S": SECRET}))
        await fake.wait_for(lambda: fake.final_update(lease), timeout=30)
    assert fake.lines(lease) == [
        "buildit: 1 secret value(s) shorter than 3 characters are not masked in this log",
        '$ echo "pin $PIN"',
        "pin 42",
    ]
