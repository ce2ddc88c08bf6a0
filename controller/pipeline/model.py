"""Typed pipeline model and diagnostics produced by validation."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Diagnostic:
    """One problem in a pipeline file, addressed as FILE:LINE:COL like a compiler error."""

    file: str
    line: int
    col: int
    message: str
    hint: str = ""
    severity: str = "error"

    def format(self, source: str | None = None) -> str:
        """Render for a terminal: the `file:line:col: error: message` line, the source line, a hint."""
        out = [f"{self.file}:{self.line}:{self.col}: {self.severity}: {self.message}"]
        if source is not None:
            lines = source.splitlines()
            if 1 <= self.line <= len(lines):
                text = lines[self.line - 1].expandtabs(1)
                gutter = f"{self.line:>5} | "
                out.append(gutter + text)
                out.append(" " * (len(gutter) - 2) + "| " + " " * max(self.col - 1, 0) + "^")
        if self.hint:
            out.append(f"  hint: {self.hint}")
        return "\n".join(out)


class PipelineInvalid(Exception):
    """A pipeline file has one or more problems; `diagnostics` lists all of them."""

    def __init__(self, diagnostics: list[Diagnostic], source: str | None = None) -> None:
        self.diagnostics = diagnostics
        self.source = source
        super().__init__("\n".join(d.format() for d in diagnostics))

    def report(self) -> str:
        """Every diagnostic with its source excerpt, ready to print."""
        return "\n".join(d.format(self.source) for d in self.diagnostics)


@dataclass(frozen=True)
class Location:
    """Where a node starts in the source (1-based)."""

    line: int
    col: int


@dataclass(frozen=True)
class Stage:
    """A stage as written in the pipeline file, validated but not yet interpolated."""

    name: str
    index: int
    location: Location
    commands: tuple[str, ...]
    image: str | None = None
    needs: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    artifacts: tuple[str, ...] = ()
    timeout_s: float = 3600.0
    retries: int = 0
    labels: dict[str, str] = field(default_factory=dict)
    workdir: str = ""
    when_branch: str | None = None


@dataclass(frozen=True)
class Pipeline:
    """A validated pipeline: its name, global env and stages in file order."""

    name: str
    stages: tuple[Stage, ...]
    env: tuple[tuple[str, str], ...] = ()
    file: str = ".buildit.kdl"

    def stage(self, name: str) -> Stage:
        """The stage called `name` (KeyError if absent)."""
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise KeyError(name)
