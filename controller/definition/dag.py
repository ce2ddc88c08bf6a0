"""The stage graph: order, readiness and failure propagation. Pure functions over names.

Everything here is linear in stages + needs (the topological order is O((n + e) log n) for its heap)
and iterative: a 10,000-stage chain must neither take quadratic time nor hit Python's recursion limit.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator, Mapping, Sequence

from agent.contract.types import StageStatus


def find_cycle(needs: Mapping[str, Sequence[str]]) -> list[str] | None:
    """A dependency cycle as a path `[a, b, ..., a]`, or None when the graph is acyclic.

    A depth-first search from each stage in declaration order, following needs in the order written,
    so the reported path is stable. Iterative (an explicit stack), so a long chain cannot overflow
    Python's recursion limit; names outside `needs` are ignored (they are reported elsewhere).
    """
    white, grey, black = 0, 1, 2
    color = dict.fromkeys(needs, white)
    for root in needs:
        if color[root] != white:
            continue
        color[root] = grey
        path = [root]  # the grey stages, outermost first
        position = {root: 0}  # where each grey stage sits in `path`
        pending: list[Iterator[str]] = [iter(needs.get(root, ()))]
        while pending:
            for dep in pending[-1]:
                state = color.get(dep)
                if state == grey:
                    return [*path[position[dep] :], dep]
                if state == white:
                    color[dep] = grey
                    position[dep] = len(path)
                    path.append(dep)
                    pending.append(iter(needs.get(dep, ())))
                    break
            else:
                done = path.pop()
                del position[done]
                color[done] = black
                pending.pop()
    return None


class Dag:
    """A validated, acyclic stage graph; keeps declaration order wherever order is free."""

    def __init__(self, needs: Mapping[str, Sequence[str]]) -> None:
        unknown = {dep for deps in needs.values() for dep in deps if dep not in needs}
        if unknown:
            raise ValueError(f"unknown stages in needs: {sorted(unknown)}")
        self.needs: dict[str, tuple[str, ...]] = {k: tuple(v) for k, v in needs.items()}
        self.dependents: dict[str, list[str]] = {k: [] for k in needs}
        for name, deps in self.needs.items():
            for dep in deps:
                self.dependents[dep].append(name)
        order = self._topological()
        if len(order) < len(self.needs):
            cycle = find_cycle(self.needs)
            raise ValueError("dependency cycle: " + " -> ".join(cycle or ()))
        self.order = order

    def _topological(self) -> list[str]:
        """Declaration order, except that a stage moves after everything it needs.

        Kahn's algorithm with a heap on declaration index: at each step the earliest-declared stage
        whose needs are all placed comes next. Stages on a cycle are never placed, so a result
        shorter than the graph means there is a cycle.
        """
        names = list(self.needs)
        index = {name: i for i, name in enumerate(names)}
        waiting = {name: len(deps) for name, deps in self.needs.items()}  # needs not yet placed
        heap = [i for i, name in enumerate(names) if not waiting[name]]  # ascending: already a heap
        order: list[str] = []
        while heap:
            name = names[heapq.heappop(heap)]
            order.append(name)
            for child in self.dependents[name]:  # a need written twice appears here twice too
                waiting[child] -= 1
                if not waiting[child]:
                    heapq.heappush(heap, index[child])
        return order

    def ready(self, status: Mapping[str, StageStatus]) -> list[str]:
        """Pending stages whose needs have all succeeded: these may start now, in parallel."""
        return [
            name
            for name in self.order
            if status.get(name, StageStatus.PENDING) is StageStatus.PENDING
            and all(status.get(dep) is StageStatus.SUCCEEDED for dep in self.needs[name])
        ]

    def blocked(self, status: Mapping[str, StageStatus]) -> list[str]:
        """Pending stages that can never run because a need ended without success."""
        return [name for name in self.order if self._is_blocked(name, status)]

    def _is_blocked(self, name: str, status: Mapping[str, StageStatus]) -> bool:
        if status.get(name, StageStatus.PENDING) is not StageStatus.PENDING:
            return False
        return any(
            (s := status.get(dep)) is not None and s.finished and s is not StageStatus.SUCCEEDED
            for dep in self.needs[name]
        )

    def propagate(self, status: dict[str, StageStatus]) -> list[str]:
        """Mark every stage below a failed/skipped/cancelled need as skipped; returns those marked.

        One pass in topological order: a stage's needs are settled before the stage is looked at, so
        a stage skipped here blocks its dependents later in the same pass. Marked in that order.
        """
        marked: list[str] = []
        for name in self.order:
            if self._is_blocked(name, status):
                status[name] = StageStatus.SKIPPED
                marked.append(name)
        return marked

    def descendants(self, name: str) -> set[str]:
        """Every stage that needs `name`, directly or transitively."""
        seen: set[str] = set()
        todo = list(self.dependents[name])
        while todo:
            child = todo.pop()
            if child not in seen:
                seen.add(child)
                todo.extend(self.dependents[child])
        return seen
