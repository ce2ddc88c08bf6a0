"""Lay a run's stage DAG out in topological columns, for the run page's SVG.

Pure: stage names and their `needs` in, boxes and edge paths out. A stage's column is the length
of the longest `needs` chain leading to it, so every edge points rightwards; within a column the
stages keep file order, which is what the pipeline's author wrote and expects to see.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

BOX_W = 180
BOX_H = 56
COL_GAP = 64
ROW_GAP = 20
MARGIN = 12


@dataclass(frozen=True)
class Node:
    """One stage's box: its column and row, and its top-left corner in SVG units."""

    name: str
    column: int
    row: int
    x: int
    y: int
    width: int = BOX_W
    height: int = BOX_H


@dataclass(frozen=True)
class Edge:
    """A `needs` edge from `source` (needed) to `target` (needing), as an SVG path."""

    source: str
    target: str
    path: str


@dataclass(frozen=True)
class Layout:
    """Every box and edge, and the drawing's size."""

    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...]
    width: int
    height: int

    def node(self, name: str) -> Node:
        """The box of stage `name` (KeyError if absent)."""
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(name)


class LayoutError(ValueError):
    """The stages do not form a DAG (a cycle, or a need that names no stage)."""


def columns(stages: Sequence[tuple[str, Sequence[str]]]) -> dict[str, int]:
    """Each stage's column: 0 without needs, else 1 + the largest column among its needs."""
    needs = {name: tuple(deps) for name, deps in stages}
    for name, deps in needs.items():
        for dep in deps:
            if dep not in needs:
                raise LayoutError(f"stage '{name}' needs '{dep}', which is not a stage of this run")
    column: dict[str, int] = {}
    visiting: set[str] = set()

    def depth(name: str) -> int:
        if name in column:
            return column[name]
        if name in visiting:
            raise LayoutError(f"the needs of stage '{name}' form a cycle")
        visiting.add(name)
        value = 1 + max((depth(dep) for dep in needs[name]), default=-1)
        visiting.discard(name)
        column[name] = value
        return value

    for name, _ in stages:
        depth(name)
    return column


def layout(stages: Sequence[tuple[str, Sequence[str]]]) -> Layout:
    """Boxes in topological columns (file order within a column) and a curved path per edge."""
    column = columns(stages)
    rows: dict[int, int] = {}
    nodes: list[Node] = []
    for name, _ in stages:
        col = column[name]
        row = rows.get(col, 0)
        rows[col] = row + 1
        nodes.append(
            Node(
                name=name,
                column=col,
                row=row,
                x=MARGIN + col * (BOX_W + COL_GAP),
                y=MARGIN + row * (BOX_H + ROW_GAP),
            )
        )
    by_name = {node.name: node for node in nodes}
    edges: list[Edge] = []
    for name, deps in stages:
        target = by_name[name]
        for dep in deps:
            source = by_name[dep]
            x1, y1 = source.x + source.width, source.y + source.height // 2
            x2, y2 = target.x, target.y + target.height // 2
            bend = (x2 - x1) // 2
            edges.append(Edge(dep, name, f"M{x1},{y1} C{x1 + bend},{y1} {x2 - bend},{y2} {x2},{y2}"))
    n_cols = max(column.values(), default=-1) + 1
    n_rows = max(rows.values(), default=0)
    width = 2 * MARGIN + n_cols * BOX_W + max(n_cols - 1, 0) * COL_GAP
    height = 2 * MARGIN + n_rows * BOX_H + max(n_rows - 1, 0) * ROW_GAP
    return Layout(tuple(nodes), tuple(edges), width, height)
