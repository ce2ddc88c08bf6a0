"""`${context.name}` variables: finding, checking and substituting them.

Two substitution modes keep outside values from ever becoming shell syntax:

* in `run` commands every reference becomes a reference to an environment variable
  (`${git.message}` -> `${BUILDIT_GIT_MESSAGE}`) whose value the executor exports, so the shell
  expands it as data: a commit message like `$(touch /tmp/pwned)` is printed, never executed;
* in plain values (env values, image, workdir) the value is substituted literally.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
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
# `${context.name}`; anything else in braces (`${HOME}`, `${VAR:-x}`) is ordinary shell syntax
# and is left alone.
_REF = re.compile(r"\$\{\s*([A-Za-z_][A-Za-z0-9_]*\.[^}]*?)\s*\}")


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


def scan(text: str) -> tuple[list[Reference], list[RefProblem]]:
    """All references in `text`, plus problems for malformed or unknown ones."""
    refs: list[Reference] = []
    problems: list[RefProblem] = []
    for match in _REF.finditer(text):
        body = match.group(1).strip()
        context, _, name = body.partition(".")
        if not name:
            problems.append(
                RefProblem(
                    match.start(),
                    f"variable '${{{body}}}' has no name after '{context}.'",
                    "contexts: " + ", ".join(CONTEXTS),
                )
            )
            continue
        if context not in CONTEXTS:
            problems.append(
                RefProblem(
                    match.start(),
                    f"unknown variable context '{context}' in '${{{body}}}'",
                    _suggest(context, CONTEXTS, "contexts: " + ", ".join(CONTEXTS)),
                )
            )
            continue
        if context in KNOWN and name not in KNOWN[context]:
            known = KNOWN[context]
            problems.append(
                RefProblem(
                    match.start(),
                    f"unknown variable '${{{body}}}'",
                    _suggest(name, known, f"{context}.* has: " + ", ".join(known)),
                )
            )
            continue
        if context in OPEN_CONTEXTS and not _IDENT.match(name):
            problems.append(
                RefProblem(
                    match.start(),
                    f"'{name}' in '${{{body}}}' is not a valid name",
                    "names are letters, digits and '_', not starting with a digit",
                )
            )
            continue
        refs.append(Reference(context, name, match.start(), match.end()))
    # A `$` + `{` that never closes is almost always a typo.
    for match in re.finditer(r"\$\{[^}]*\Z", text):
        problems.append(RefProblem(match.start(), "variable reference '${' is never closed with '}'"))
    return refs, problems


def _suggest(word: str, choices: tuple[str, ...], fallback: str) -> str:
    import difflib

    close = difflib.get_close_matches(word, choices, n=1)
    return f"did you mean '{close[0]}'?" if close else fallback


def to_shell(text: str) -> str:
    """Rewrite references as environment-variable references for a `run` command."""
    return _REF.sub(lambda m: _shell_ref(m.group(1)), text)


def _shell_ref(body: str) -> str:
    context, _, name = body.strip().partition(".")
    return "${" + env_name(context, name) + "}"


def substitute(text: str, values: Mapping[str, str]) -> str:
    """Replace references by their values (keys are `context.name`); unknown keys stay as written."""

    def replace(match: re.Match[str]) -> str:
        key = match.group(1).strip()
        return values.get(key, match.group(0))

    return _REF.sub(replace, text)


def references(text: str) -> list[Reference]:
    """The valid references in `text` (problems ignored: validation reports them)."""
    return scan(text)[0]
