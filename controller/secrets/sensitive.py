"""`Sensitive`: a secret value in transit through the controller, which never shows itself.

Values are write-only: no response, page, log line, event, error or stack trace may contain one.
Wrapping a value the moment it enters (a REST body, a CLI prompt) makes the accidental paths safe:
`repr`, `str` and f-strings print `***`, so a log call or a traceback with locals shows no value.
Only `reveal()` hands the text out, where it must go: the cipher, or a stage's lease.
"""

from __future__ import annotations


class Sensitive:
    """A secret value; see the module docstring."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The value itself, for the cipher or a lease (never for a message)."""
        return self._value

    def __len__(self) -> int:
        return len(self._value)

    def __repr__(self) -> str:
        return "Sensitive('***')"

    def __str__(self) -> str:
        return "***"

    def __format__(self, spec: str) -> str:
        return "***"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sensitive) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self) -> tuple[type[Sensitive], tuple[str]]:
        raise TypeError("a secret value is not pickled")
