"""Stage output hygiene: secret masking (and, with the agent, batching).

Masking happens before a line leaves the machine or reaches a terminal, so a secret never appears
in any log, however it was printed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

MASK = "***"


class Masker:
    """Replaces every occurrence of any secret value with `***`.

    Occurrences are found for each secret separately and merged, so overlapping or nested secrets
    are masked whole (no part of any secret survives). Multi-line secrets are masked line by line
    too, since output is handled a line at a time.
    """

    def __init__(self, secrets: Iterable[str]) -> None:
        values: set[str] = set()
        for secret in secrets:
            if not secret:
                continue
            values.add(secret)
            values.update(part for part in secret.splitlines() if part.strip())
        self._values = sorted(values, key=len, reverse=True)

    def __call__(self, line: str) -> str:
        """The line with every secret replaced by `***`."""
        spans: list[tuple[int, int]] = []
        for value in self._values:
            start = line.find(value)
            while start >= 0:
                spans.append((start, start + len(value)))
                start = line.find(value, start + 1)
        if not spans:
            return line
        spans.sort()
        out: list[str] = []
        pos = 0
        cur_start, cur_end = spans[0]
        for start, end in spans[1:]:
            if start < cur_end:
                cur_end = max(cur_end, end)
                continue
            out.append(line[pos:cur_start] + MASK)
            pos = cur_end
            cur_start, cur_end = start, end
        out.append(line[pos:cur_start] + MASK + line[cur_end:])
        return "".join(out)

    def wrap(self, sink: Callable[[str], None]) -> Callable[[str], None]:
        """A line callback that masks before passing lines on."""
        if not self._values:
            return sink
        return lambda line: sink(self(line))
