"""Stage output hygiene: secret masking (and, with the agent, batching).

Masking happens before a line leaves the machine or reaches a terminal, so a secret never appears
in any log, however it was printed.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

MASK = "***"


class Masker:
    """Replaces every occurrence of any secret value with `***`.

    Multi-line secrets are masked line by line too, since output is handled a line at a time.
    Longest values go first so a secret that contains another is masked whole.
    """

    def __init__(self, secrets: Iterable[str]) -> None:
        values: set[str] = set()
        for secret in secrets:
            if not secret:
                continue
            values.add(secret)
            values.update(part for part in secret.splitlines() if part.strip())
        ordered = sorted(values, key=len, reverse=True)
        self._pattern = re.compile("|".join(re.escape(v) for v in ordered)) if ordered else None

    def __call__(self, line: str) -> str:
        """The line with every secret replaced by `***`."""
        if self._pattern is None:
            return line
        return self._pattern.sub(MASK, line)

    def wrap(self, sink: Callable[[str], None]) -> Callable[[str], None]:
        """A line callback that masks before passing lines on."""
        if self._pattern is None:
            return sink
        return lambda line: sink(self(line))
