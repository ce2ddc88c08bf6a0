"""The stage graph: order, readiness and failure propagation. Pure functions over names."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from agent.contract.types import StageStatus


def find_cycle(needs: Mapping[str, Sequence[str]]) -> list[str] | None:
    """A dependency cycle as a path `[a, b, ..., a]`, or None when the graph is acyclic."""
    WHITE, GREY, BLACK = 0, 1, 2
    color = dict.fromkeys(needs, WHITE)
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        color[node] = GREY
        stack.append(node)
        for dep in needs.get(node, ()):
            if dep not in color:
                continue
            if color[dep] == GREY:
                return [*stack[stack.index(dep) :], dep]
            if color[dep] == WHITE:
                found = visit(dep)
                if found:
                    return found
        stack.pop()
        color[node] = BLACK
        return None

    for node in needs:
        if color[node] == WHITE:
            found = visit(node)
            if found:
                return found
    return None


class Dag:
    """A validated, acyclic stage graph; keeps declaration order wherever order is free."""

    def __init__(self, needs: Mapping[str, Sequence[str]]) -> None:
        unknown = {dep for deps in needs.values() for dep in deps if dep not in needs}
        if unknown:
            raise ValueError(f"unknown stages in needs: {sorted(unknown)}")
        cycle = find_cycle(needs)
        if cycle:
            raise ValueError("dependency cycle: " + " -> ".join(cycle))
        self.needs: dict[str, tuple[str, ...]] = {k: tuple(v) for k, v in needs.items()}
        self.dependents: dict[str, list[str]] = {k: [] for k in needs}
        for name, deps in self.needs.items():
            for dep in deps:
                self.dependents[dep].append(name)
        self.order = self._topological()

    def _topological(self) -> list[str]:
        """Declaration order, except that a stage moves after everything it needs."""
        order: list[str] = []
        placed: set[str] = set()
        remaining = list(self.needs)
        while remaining:
            for name in remaining:
                if all(dep in placed for dep in self.needs[name]):
                    order.append(name)
                    placed.add(name)
                    remaining.remove(name)
                    break
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
        return [
            name
            for name in self.order
            if status.get(name, StageStatus.PENDING) is StageStatus.PENDING
            and any(
                (s := status.get(dep)) is not None and s.finished and s is not StageStatus.SUCCEEDED
                for dep in self.needs[name]
            )
        ]

    def propagate(self, status: dict[str, StageStatus]) -> list[str]:
        """Mark every stage below a failed/skipped/cancelled need as skipped; returns those marked."""
        marked: list[str] = []
        while True:
            blocked = self.blocked(status)
            if not blocked:
                return marked
            for name in blocked:
                status[name] = StageStatus.SKIPPED
                marked.append(name)

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
