"""How a stage's message names the command it ended in (agent.executors.base)."""

from __future__ import annotations

from agent.contract.types import ExecutionResult, StageStatus
from agent.executors.base import announce, outcome_message, quote_command

COMMANDS = ["make deps", "make test", "make dist"]


def test_a_failed_command_is_named_with_its_exit_code() -> None:
    result = ExecutionResult(StageStatus.FAILED, exit_code=1, message="exit code 1", command=2)
    assert outcome_message(result, COMMANDS) == 'command 2 of 3 failed: "make test" exited with 1'


def test_a_timeout_says_where_and_a_cancel_keeps_its_reason() -> None:
    timed_out = ExecutionResult(StageStatus.TIMED_OUT, message="timed out after 10s", command=3)
    assert outcome_message(timed_out, COMMANDS) == 'timed out after 10s (in command 3 of 3: "make dist")'
    cancelled = ExecutionResult(StageStatus.CANCELLED, message="cancelled by ada", command=1)
    assert outcome_message(cancelled, COMMANDS) == "cancelled by ada"
    # No command (it never started one), or one out of range: the executor's message as it is.
    error = ExecutionResult(StageStatus.ERROR, message="image 'x' not found")
    assert outcome_message(error, COMMANDS) == "image 'x' not found"
    stray = ExecutionResult(StageStatus.FAILED, exit_code=2, message="exit code 2", command=9)
    assert outcome_message(stray, COMMANDS) == "exit code 2"


def test_the_command_is_masked_before_its_quote_is_cut() -> None:
    secret = "s3cr3t-value-0123456789"
    command = "x" * 45 + " " + secret + " && more"
    result = ExecutionResult(StageStatus.FAILED, exit_code=1, command=1)
    masked = outcome_message(result, [command], lambda text: text.replace(secret, "***"))
    assert masked == f'command 1 of 1 failed: "{"x" * 45} *** && more" exited with 1'
    assert "s3cr" not in masked
    unmasked = outcome_message(result, [command])
    assert "s3cr3t-v" in unmasked  # what an unmasked cut would have leaked


def test_quotes_are_one_short_line() -> None:
    assert quote_command("  make   test  ") == "make test"
    assert quote_command("set -e\nmake test\n") == "set -e …"
    assert quote_command("\n\n  echo hi\n") == "echo hi"
    long = "echo " + "word " * 30
    quoted = quote_command(long)
    assert len(quoted) <= 60 and quoted.endswith("word…")


def test_announce_uses_the_command_method_or_prints_the_plain_header() -> None:
    seen: list[object] = []

    class Marked:
        def __call__(self, line: str) -> None:
            seen.append(line)

        def command(self, index: int, total: int, text: str) -> None:
            seen.append((index, total, text))

    announce(Marked(), 2, 3, "make test")
    announce(seen.append, 3, 3, "make dist")
    assert seen == [(2, 3, "make test"), "$ make dist"]
