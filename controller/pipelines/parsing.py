"""Parsing pipeline files from the event loop without stalling it.

`controller.definition` is pure and synchronous; a large file (thousands of stages) takes long enough
to parse that doing it on the loop would stall every agent stream, request and socket the
controller serves. Every door that parses a file a user sent or pushed goes through `parse`:
sources above OFF_LOOP_BYTES are parsed in a worker thread, smaller ones inline (a thread hop
would cost more than the parse). Results are cached by source, so a page that shows a pipeline on
every view parses it once.
"""

from __future__ import annotations

import asyncio
import functools

from controller.definition.model import Diagnostic, Pipeline, PipelineInvalid
from controller.definition.validate import load

#: Sources at least this large are parsed in a worker thread.
OFF_LOOP_BYTES = 64 * 1024


@functools.lru_cache(maxsize=64)
def _parse(source: str, filename: str) -> tuple[Pipeline | None, tuple[Diagnostic, ...]]:
    try:
        return load(source, filename), ()
    except PipelineInvalid as exc:
        return None, tuple(exc.diagnostics)


async def parse(source: str, filename: str = ".buildit.kdl") -> tuple[Pipeline | None, list[Diagnostic]]:
    """The pipeline (None when invalid) and every diagnostic, without blocking the event loop."""
    if len(source) >= OFF_LOOP_BYTES:
        pipeline, diagnostics = await asyncio.to_thread(_parse, source, filename)
    else:
        pipeline, diagnostics = _parse(source, filename)
    return pipeline, list(diagnostics)
