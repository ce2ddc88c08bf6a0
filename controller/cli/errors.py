"""The CLI's errors: each is printed as `buildit: error: …` with the exit status of its kind."""

from __future__ import annotations

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
#: A followed run or stage (`trigger --follow`, `logs -f`) ended cancelled, or in `error` (it could not
#: run); `failed` and `timed_out` are EXIT_FAILED.
EXIT_CANCELLED, EXIT_RUN_ERROR = 3, 4


class CliError(Exception):
    """A failure the CLI reports in one line (no traceback); `exit_code` is the process status."""

    exit_code = EXIT_FAILED


class UsageError(CliError):
    """Bad command-line input: exit status 2."""

    exit_code = EXIT_USAGE


class ApiError(CliError):
    """The controller refused a request or could not be reached; the message says which and why."""
