"""Secret masking: every form in which a secret's value is likely to be printed becomes `***`.

Masking happens on the agent before output leaves the machine or reaches a terminal, so a secret does
not appear in a log because a tool printed it by accident. Forms masked, for every value of at least
`MIN_SECRET_CHARS` characters:

* the value itself; each line of a multi-line value (and that line without surrounding blanks);
* its base64, standard and URL-safe alphabets, padded or not: the value encoded alone, the three
  alignments of the value inside longer encoded data (the characters that depend only on the value),
  and the 76-column lines `base64` and MIME wrap a long encoding into;
* its percent-encoding (`quote` and `quote_plus`, with "/" safe or not, upper- or lower-case hex);
* its JSON string escaping (`json.dumps(value)[1:-1]`, ASCII-only or not);
* any of these with ANSI CSI or OSC escape sequences between its characters (a colour change in the
  middle of a value would otherwise print it whole on a terminal): the sequences are kept, after the
  mask, so the terminal's state is unchanged.

Values of 1 or 2 characters are not masked: they occur everywhere in ordinary output, and masking
them would make every log unreadable while hiding nothing (a short value is guessed in a few tries).
`Masker.too_short` counts them so the agent can say so in the stage's log; a warning is logged once.

Masking is a guard against accidents, not a boundary against a stage that wants to leak a secret:
stage code holds the value and can always print it transformed (reversed, one character per line).

Output arrives in lines, and a line longer than the executors' 64 KiB cut arrives in pieces
(`agent.executors.lines`); `PieceMasker` holds back the end of each piece until the next one arrives,
so a value straddling a cut is masked whole.
"""

from __future__ import annotations

import base64
import bisect
import json
import logging
import re
from collections.abc import Callable, Iterable
from typing import Final
from urllib.parse import quote, quote_plus

__all__ = ["MASK", "MIN_SECRET_CHARS", "Masker", "PieceMasker", "secret_forms"]

log = logging.getLogger(__name__)

MASK: Final = "***"
#: Shorter values are not masked (see the module docstring).
MIN_SECRET_CHARS: Final = 3
#: Derived forms that are only a part of an encoding (base64 of a value inside longer data) are used
#: from this length on: shorter fragments match ordinary base64 text by chance.
MIN_FRAGMENT_CHARS: Final = 6
#: Line length of `base64` (coreutils) and MIME output.
_WRAP: Final = 76
#: Extra characters a piece keeps back beyond the longest form: room for an escape sequence cut in
#: two at the end of a piece, which is not recognised (so not skipped) until its rest arrives.
_HOLD_SLACK: Final = 32

# CSI (ESC [ params intermediates final), OSC (ESC ] ... BEL or ST), and the other two-character
# escapes (ESC followed by one of @-Z \ ] ^ _ minus the two introducers above).
_ANSI: Final = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\^_]")
_PERCENT: Final = re.compile(r"%[0-9A-F]{2}")

_warned_short = False


def secret_forms(value: str) -> set[str]:
    """Every string `Masker` hides for one secret value (empty for a value too short to mask)."""
    if len(value) < MIN_SECRET_CHARS:
        return set()
    forms = {value}
    for part in value.splitlines():
        for candidate in (part, part.strip()):
            if len(candidate.strip()) >= MIN_SECRET_CHARS:
                forms.add(candidate)
    raw = value.encode("utf-8")
    forms.update(_base64_forms(raw))
    for safe in ("", "/"):
        for encoded in (quote(value, safe=safe), quote_plus(value, safe=safe)):
            forms.add(encoded)
            forms.add(_PERCENT.sub(lambda m: m.group(0).lower(), encoded))
    forms.add(json.dumps(value)[1:-1])
    forms.add(json.dumps(value, ensure_ascii=False)[1:-1])
    return {form for form in forms if len(form) >= MIN_SECRET_CHARS}


def _base64_forms(raw: bytes) -> set[str]:
    """The value's base64: alone (unpadded: it matches padded text too), inside longer data, wrapped."""
    forms: set[str] = set()
    bits = 8 * len(raw)
    for alphabet in (base64.b64encode, base64.urlsafe_b64encode):
        whole = alphabet(raw).decode("ascii").rstrip("=")
        forms.add(whole)
        for offset in range(3):
            # The value after `offset` bytes of other data: only the characters whose six bits all
            # come from the value are the same whatever surrounds it.
            encoded = alphabet(b"\0" * offset + raw).decode("ascii")
            first = -(-8 * offset // 6)
            last = (8 * offset + bits) // 6
            fragment = encoded[first:last]
            if len(fragment) >= MIN_FRAGMENT_CHARS:
                forms.add(fragment)
        if len(whole) > _WRAP:
            lines = [whole[i : i + _WRAP] for i in range(0, len(whole), _WRAP)]
            forms.update(line for line in lines if len(line) >= MIN_FRAGMENT_CHARS)
    return forms


class Masker:
    """Replaces every occurrence of any form of any secret value with `***` (see the module docstring).

    `masker(text)` masks a line or a block of lines. Occurrences are found for each form separately
    and merged, so overlapping or nested secrets are masked whole (no part of any survives); a match
    that spans lines (a multi-line value) keeps its newlines, one `***` per line.
    """

    def __init__(self, secrets: Iterable[str]) -> None:
        forms: set[str] = set()
        #: How many of the values were too short to mask (see `MIN_SECRET_CHARS`).
        self.too_short = 0
        for secret in secrets:
            if not secret:
                continue
            if len(secret) < MIN_SECRET_CHARS:
                self.too_short += 1
                continue
            forms.update(secret_forms(secret))
        self._forms = tuple(sorted(forms, key=len, reverse=True))
        #: Characters a piece of an unfinished line keeps back (a form may start in them).
        self.hold = len(self._forms[0]) - 1 + _HOLD_SLACK if self._forms else 0
        if self.too_short:
            _warn_short()

    def __bool__(self) -> bool:
        """True when there is anything to mask."""
        return bool(self._forms)

    def __call__(self, text: str) -> str:
        """`text` with every form of every secret replaced by `***`."""
        spans = self._spans(text)
        if not spans:
            return text
        out: list[str] = []
        pos = 0
        for start, end in spans:
            out.append(text[pos:start])
            out.append(_replacement(text[start:end]))
            pos = end
        out.append(text[pos:])
        return "".join(out)

    def wrap(self, sink: Callable[[str], None]) -> Callable[[str], None]:
        """An output callback that masks lines (and pieces of long lines) before passing them on.

        Without any secret this is `sink` itself: nothing to do per line.
        """
        if not self._forms:
            return sink
        return _MaskedLines(self, sink)

    def safe_cut(self, text: str) -> int:
        """How much of `text`, an unfinished line, can be masked and let go now.

        The rest (the last `hold` visible characters, extended back to the start of any match they
        cut) waits for the line's next piece, since a form may start in it and end there.
        """
        if not self._forms:
            return len(text)
        if "\x1b" in text:
            visible, starts, origins = _strip(text)
            target = len(visible) - self.hold
            cut = 0 if target <= 0 else _origin(target, starts, origins)
        else:
            cut = max(len(text) - self.hold, 0)
        for start, end in self._spans(text):
            if start < cut < end:
                return start
        return cut

    # --- finding

    def _spans(self, text: str) -> list[tuple[int, int]]:
        """Merged, sorted (start, end) of every occurrence of every form in `text`."""
        found: list[tuple[int, int]] = []
        for form in self._forms:
            start = text.find(form)
            while start >= 0:
                found.append((start, start + len(form)))
                start = text.find(form, start + 1)
        if "\x1b" in text:
            found.extend(self._spans_across_escapes(text))
        if not found:
            return found
        found.sort()
        merged = [found[0]]
        for start, end in found[1:]:
            last_start, last_end = merged[-1]
            if start < last_end:
                if end > last_end:
                    merged[-1] = (last_start, end)
            else:
                merged.append((start, end))
        return merged

    def _spans_across_escapes(self, text: str) -> list[tuple[int, int]]:
        """Occurrences with escape sequences between their characters, in `text`'s positions."""
        visible = _ANSI.sub("", text)
        if len(visible) == len(text):
            return []
        hits = [form for form in self._forms if form in visible]
        if not hits:
            return []  # the common case for coloured output: nothing secret in it
        visible, starts, origins = _strip(text)
        found: list[tuple[int, int]] = []
        for form in hits:
            start = visible.find(form)
            while start >= 0:
                end = start + len(form)
                found.append((_origin(start, starts, origins), _origin(end - 1, starts, origins) + 1))
                start = visible.find(form, start + 1)
        return found


class PieceMasker:
    """Masks the pieces of one over-long line, holding back what a form may straddle.

    `piece(text, last)` takes the pieces in order (`last` for the piece that ends the line) and
    passes masked text on to `sink`, as pieces of the line still: what it holds back is prepended to
    the next piece, so the line's text reaches `sink` complete and in order, only cut elsewhere.
    """

    def __init__(self, masker: Masker, sink: Callable[[str], None]) -> None:
        self._masker = masker
        self._sink = sink
        self._carry = ""

    def piece(self, text: str, last: bool) -> None:
        """One piece of the line (see the class docstring)."""
        if self._carry:
            text = self._carry + text
            self._carry = ""
        if last:
            self._sink(self._masker(text))
            return
        cut = self._masker.safe_cut(text)
        self._carry = text[cut:]
        if cut:
            self._sink(self._masker(text[:cut]))


class _MaskedLines:
    """What `Masker.wrap` returns: masks each line; the pieces of a long line through a PieceMasker."""

    def __init__(self, masker: Masker, sink: Callable[[str], None]) -> None:
        self._masker = masker
        self._sink = sink
        self.piece = PieceMasker(masker, sink).piece

    def __call__(self, line: str) -> None:
        self._sink(self._masker(line))


def _strip(text: str) -> tuple[str, list[int], list[int]]:
    """`text` without escape sequences, and where each visible run starts: (visible, starts, origins).

    Visible run k starts at `starts[k]` in the visible text and at `origins[k]` in `text`.
    """
    starts = [0]
    origins = [0]
    parts: list[str] = []
    pos = 0
    length = 0
    for match in _ANSI.finditer(text):
        parts.append(text[pos : match.start()])
        length += match.start() - pos
        pos = match.end()
        starts.append(length)
        origins.append(pos)
    parts.append(text[pos:])
    return "".join(parts), starts, origins


def _origin(index: int, starts: list[int], origins: list[int]) -> int:
    """Where visible character `index` is in the original text."""
    run = bisect.bisect_right(starts, index) - 1
    return origins[run] + index - starts[run]


def _replacement(segment: str) -> str:
    """`***` for a matched segment; its newlines and escape sequences are kept (each line gets one)."""
    if "\x1b" not in segment and "\n" not in segment:
        return MASK
    lines = []
    for line in segment.split("\n"):
        visible = _ANSI.sub("", line)
        lines.append((MASK if visible.strip() else visible) + "".join(_ANSI.findall(line)))
    return "\n".join(lines)


def _warn_short() -> None:
    global _warned_short
    if not _warned_short:
        _warned_short = True
        log.warning(
            "a secret value shorter than %d characters is not masked in logs (too short to tell from "
            "ordinary output); use longer secrets",
            MIN_SECRET_CHARS,
        )
