"""`${context.name}` variables: finding, checking and substituting them.

Two substitution modes keep outside values from ever becoming shell syntax:

* in `run` commands every reference becomes a reference to an environment variable
  (`${git.message}` -> `${BUILDIT_GIT_MESSAGE}`) whose value the executor exports, so the shell
  expands it as data: a commit message like `$(touch /tmp/pwned)` is printed, never executed;
* in plain values (env values, image, workdir) the value is substituted literally.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

# Known variables per context; `env` and `secrets` accept any identifier.
KNOWN: dict[str, tuple[str, ...]] = {
    "git": ("sha", "short_sha", "branch", "message", "author"),
    "pipeline": ("id", "name"),
    "run": ("id", "number"),
    "stage": ("name", "index"),
}
OPEN_CONTEXTS = ("env", "secrets")
CONTEXTS = (*KNOWN, *OPEN_CONTEXTS)

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
# `${context.name}`: `${`, a name, a dot, then anything up to the first `}` (the body is that text,
# stripped). Anything else in braces (`${HOME}`, `${VAR:-x}`) is ordinary shell syntax and is left
# alone. `_matches` finds them in linear time: the equivalent single regex
# `\$\{\s*([A-Za-z_][A-Za-z0-9_]*\.[^}]*?)\s*\}` rescans to the next `}` from every `${`, which is
# quadratic in a long value with many `${a.` and no `}`.
_REF_START = re.compile(r"\$\{\s*[A-Za-z_][A-Za-z0-9_]*\.")


@dataclass(frozen=True)
class Reference:
    """One `${context.name}` occurrence in a string (offsets index the string)."""

    context: str
    name: str
    start: int
    end: int

    @property
    def key(self) -> str:
        """`context.name`, as written."""
        return f"{self.context}.{self.name}"


@dataclass(frozen=True)
class RefProblem:
    """An unusable reference: where it is in the string, what is wrong, how to fix it."""

    start: int
    message: str
    hint: str = ""


def env_name(context: str, name: str) -> str:
    """The environment variable that carries a variable's value into a stage."""
    if context == "env":
        return name
    if context == "secrets":
        return f"BUILDIT_SECRET_{name}"
    return f"BUILDIT_{context.upper()}_{name.upper()}"


def _matches(text: str) -> Iterator[tuple[int, int, str]]:
    """(start, end, body) of each `${context.name}` in `text`, left to right, not overlapping.

    Linear: the position of the next `}` is looked up once and reused by every `${` before it.
    """
    pos = 0
    close = -1
    while (start := text.find("${", pos)) >= 0:
        head = _REF_START.match(text, start)
        if head is None:
            pos = start + 1
            continue
        if close < head.end():
            close = text.find("}", head.end())
            if close < 0:
                return  # no `}` left: no later `${` can be closed either
        yield start, close + 1, text[start + 2 : close].strip()
        pos = close + 1


def scan(text: str) -> tuple[list[Reference], list[RefProblem]]:
    """All references in `text`, plus problems for malformed or unknown ones."""
    refs: list[Reference] = []
    problems: list[RefProblem] = []
    for start, end, body in _matches(text):
        context, _, name = body.partition(".")
        if not name:
            problems.append(
                RefProblem(
                    start,
                    f"variable '${{{body}}}' has no name after '{context}.'",
                    "contexts: " + ", ".join(CONTEXTS),
                )
            )
            continue
        if context not in CONTEXTS:
            problems.append(
                RefProblem(
                    start,
                    f"unknown variable context '{context}' in '${{{body}}}'",
                    _suggest(context, CONTEXTS, "contexts: " + ", ".join(CONTEXTS)),
                )
            )
            continue
        if context in KNOWN and name not in KNOWN[context]:
            known = KNOWN[context]
            problems.append(
                RefProblem(
                    start,
                    f"unknown variable '${{{body}}}'",
                    _suggest(name, known, f"{context}.* has: " + ", ".join(known)),
                )
            )
            continue
        if context in OPEN_CONTEXTS and not _IDENT.match(name):
            problems.append(
                RefProblem(
                    start,
                    f"'{name}' in '${{{body}}}' is not a valid name",
                    "names are letters, digits and '_', not starting with a digit",
                )
            )
            continue
        refs.append(Reference(context, name, start, end))
    # A `$` + `{` that never closes is almost always a typo: the first `${` after the last `}`.
    unclosed = text.find("${", text.rfind("}") + 1)
    if unclosed >= 0:
        problems.append(RefProblem(unclosed, "variable reference '${' is never closed with '}'"))
    return refs, problems


def _suggest(word: str, choices: tuple[str, ...], fallback: str) -> str:
    import difflib

    close = difflib.get_close_matches(word, choices, n=1)
    return f"did you mean '{close[0]}'?" if close else fallback


def to_shell(text: str) -> str:
    """Rewrite references as environment-variable references for a `run` command."""
    return _replace(text, lambda body, _: _shell_ref(body))


def _shell_ref(body: str) -> str:
    context, _, name = body.strip().partition(".")
    return "${" + env_name(context, name) + "}"


def substitute(text: str, values: Mapping[str, str]) -> str:
    """Replace references by their values (keys are `context.name`); unknown keys stay as written."""
    return _replace(text, values.get)


def _replace(text: str, value: Callable[[str, str], str]) -> str:
    """`text` with each reference replaced by `value(body, as_written)`, in one pass."""
    pieces: list[str] = []
    pos = 0
    for start, end, body in _matches(text):
        pieces.append(text[pos:start])
        pieces.append(value(body, text[start:end]))
        pos = end
    pieces.append(text[pos:])
    return "".join(pieces)


def references(text: str) -> list[Reference]:
    """The valid references in `text` (problems ignored: validation reports them)."""
    return scan(text)[0]
