"""The stage graph: cycles, order, readiness and failure propagation."""

from __future__ import annotations

import pytest

from agent.contract.types import StageStatus
from controller.definition.dag import Dag, find_cycle

S = StageStatus

# lint, test, docs are independent roots; build needs lint+test; deploy needs build; notify needs deploy.
GRAPH = {
    "lint": [],
    "test": [],
    "build": ["lint", "test"],
    "docs": [],
    "deploy": ["build"],
    "notify": ["deploy"],
}


def is_topological(order: list[str], needs: dict[str, list[str]]) -> bool:
    position = {name: i for i, name in enumerate(order)}
    return all(position[dep] < position[name] for name, deps in needs.items() for dep in deps)


# --- find_cycle --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "needs",
    [{}, {"a": []}, {"a": [], "b": ["a"], "c": ["a", "b"]}, GRAPH, {"a": ["b"], "b": ["c"], "c": []}],
)
def test_find_cycle_none_for_acyclic(needs: dict[str, list[str]]) -> None:
    assert find_cycle(needs) is None


def test_find_cycle_self_need() -> None:
    assert find_cycle({"ok": [], "a": ["a"]}) == ["a", "a"]


def test_find_cycle_two_cycle() -> None:
    assert find_cycle({"a": ["b"], "b": ["a"]}) == ["a", "b", "a"]


def test_find_cycle_three_cycle_path() -> None:
    assert find_cycle({"a": ["c"], "b": ["a"], "c": ["b"]}) == ["a", "c", "b", "a"]


def test_find_cycle_path_starts_where_the_cycle_starts() -> None:
    # x leads into the y <-> z cycle but is not part of it.
    assert find_cycle({"ok": [], "x": ["y"], "y": ["z"], "z": ["y"]}) == ["y", "z", "y"]


def test_find_cycle_ignores_unknown_names() -> None:
    assert find_cycle({"a": ["ghost"], "b": ["a"]}) is None


def test_find_cycle_diamond_is_not_a_cycle() -> None:
    assert find_cycle({"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"]}) is None


# --- construction ------------------------------------------------------------------------------


def test_dag_rejects_unknown_needs() -> None:
    with pytest.raises(ValueError, match=r"unknown stages in needs: \['ghost', 'zz'\]"):
        Dag({"a": ["zz", "ghost"]})


def test_dag_rejects_cycles_with_the_path() -> None:
    with pytest.raises(ValueError, match="dependency cycle: a -> b -> a"):
        Dag({"a": ["b"], "b": ["a"]})


def test_dag_dependents() -> None:
    dag = Dag(GRAPH)
    assert dag.dependents == {
        "lint": ["build"],
        "test": ["build"],
        "build": ["deploy"],
        "docs": [],
        "deploy": ["notify"],
        "notify": [],
    }
    assert dag.needs["build"] == ("lint", "test")


# --- order -------------------------------------------------------------------------------------


def test_order_is_topological_and_complete() -> None:
    dag = Dag(GRAPH)
    assert sorted(dag.order) == sorted(GRAPH)
    assert is_topological(dag.order, GRAPH)


def test_order_keeps_declaration_order_of_independent_stages() -> None:
    assert Dag({"c": [], "a": [], "b": []}).order == ["c", "a", "b"]
    assert Dag({"z": [], "y": [], "x": ["z"]}).order == ["z", "y", "x"]
    order = Dag(GRAPH).order
    assert [n for n in order if not GRAPH[n]] == ["lint", "test", "docs"]


def test_order_places_stage_after_needs_declared_later() -> None:
    order = Dag({"deploy": ["build"], "build": []}).order
    assert order == ["build", "deploy"]


def test_order_equals_declaration_order_when_that_is_already_valid() -> None:
    # A stable topological sort: always the earliest-declared stage whose needs are placed (a FIFO
    # Kahn would give a, d, b, c, and a runner with one slot would not follow the file).
    assert Dag({"a": [], "b": ["a"], "c": ["b"], "d": []}).order == ["a", "b", "c", "d"]


# --- ready -------------------------------------------------------------------------------------


def test_ready_at_start_lists_parallel_roots() -> None:
    assert Dag(GRAPH).ready({}) == ["lint", "test", "docs"]
    assert Dag(GRAPH).ready(dict.fromkeys(GRAPH, S.PENDING)) == ["lint", "test", "docs"]


def test_ready_needs_all_needs_succeeded() -> None:
    dag = Dag(GRAPH)
    status = dict.fromkeys(GRAPH, S.PENDING)
    status.update(lint=S.SUCCEEDED, test=S.RUNNING, docs=S.RUNNING)
    assert dag.ready(status) == []
    status["test"] = S.SUCCEEDED
    assert dag.ready(status) == ["build"]


def test_ready_excludes_stages_already_started_or_finished() -> None:
    dag = Dag({"a": [], "b": [], "c": []})
    status = {"a": S.RUNNING, "b": S.QUEUED, "c": S.SUCCEEDED}
    assert dag.ready(status) == []


def test_ready_lists_siblings_together_after_a_shared_need() -> None:
    dag = Dag({"build": [], "unit": ["build"], "e2e": ["build"], "lint": ["build"]})
    assert dag.ready({"build": S.SUCCEEDED}) == ["unit", "e2e", "lint"]


@pytest.mark.parametrize("state", [S.FAILED, S.SKIPPED, S.CANCELLED, S.TIMED_OUT, S.ERROR, S.RUNNING])
def test_ready_not_after_unsuccessful_need(state: StageStatus) -> None:
    assert Dag({"a": [], "b": ["a"]}).ready({"a": state}) == []


# --- blocked -----------------------------------------------------------------------------------


@pytest.mark.parametrize("state", [S.FAILED, S.SKIPPED, S.CANCELLED, S.TIMED_OUT, S.ERROR])
def test_blocked_after_finished_unsuccessful_need(state: StageStatus) -> None:
    assert Dag({"a": [], "b": ["a"]}).blocked({"a": state}) == ["b"]


@pytest.mark.parametrize("state", [S.PENDING, S.QUEUED, S.RUNNING, S.SUCCEEDED])
def test_not_blocked_while_need_can_still_succeed(state: StageStatus) -> None:
    assert Dag({"a": [], "b": ["a"]}).blocked({"a": state}) == []


def test_blocked_when_any_one_need_failed() -> None:
    dag = Dag({"a": [], "b": [], "c": ["a", "b"]})
    assert dag.blocked({"a": S.SUCCEEDED, "b": S.FAILED}) == ["c"]
    assert dag.blocked({"a": S.RUNNING, "b": S.FAILED}) == ["c"]


def test_blocked_ignores_stages_that_are_not_pending() -> None:
    assert Dag({"a": [], "b": ["a"]}).blocked({"a": S.FAILED, "b": S.RUNNING}) == []


# --- propagate ---------------------------------------------------------------------------------


def test_propagate_skips_transitive_dependents_but_not_siblings() -> None:
    dag = Dag(GRAPH)
    status = {"lint": S.SUCCEEDED, "test": S.FAILED, "docs": S.RUNNING}
    marked = dag.propagate(status)
    assert marked == ["build", "deploy", "notify"]
    assert status == {
        "lint": S.SUCCEEDED,
        "test": S.FAILED,
        "docs": S.RUNNING,
        "build": S.SKIPPED,
        "deploy": S.SKIPPED,
        "notify": S.SKIPPED,
    }


def test_propagate_leaves_independent_branches_runnable() -> None:
    dag = Dag({"a": [], "a2": ["a"], "b": [], "b2": ["b"], "c": ["a2", "b2"]})
    status = dict.fromkeys(["a", "a2", "b", "b2", "c"], S.PENDING)
    status["a"] = S.FAILED
    assert dag.propagate(status) == ["a2", "c"]
    assert status["b"] is S.PENDING and status["b2"] is S.PENDING
    assert dag.ready(status) == ["b"]


def test_propagate_from_a_skipped_stage() -> None:
    dag = Dag({"deploy": [], "notify": ["deploy"]})
    status = {"deploy": S.SKIPPED, "notify": S.PENDING}
    assert dag.propagate(status) == ["notify"]
    assert status["notify"] is S.SKIPPED


def test_propagate_is_idempotent_and_noop_without_failures() -> None:
    dag = Dag(GRAPH)
    status = {"test": S.FAILED}
    assert dag.propagate(status) == ["build", "deploy", "notify"]
    assert dag.propagate(status) == []
    clean = {"lint": S.SUCCEEDED, "test": S.SUCCEEDED}
    assert dag.propagate(clean) == []
    assert clean == {"lint": S.SUCCEEDED, "test": S.SUCCEEDED}


def test_propagate_does_not_touch_running_dependents() -> None:
    dag = Dag({"a": [], "b": ["a"], "c": ["b"]})
    status = {"a": S.FAILED, "b": S.RUNNING, "c": S.PENDING}
    assert dag.propagate(status) == []
    assert status["b"] is S.RUNNING


# --- descendants -------------------------------------------------------------------------------


def test_descendants_transitive() -> None:
    dag = Dag(GRAPH)
    assert dag.descendants("lint") == {"build", "deploy", "notify"}
    assert dag.descendants("build") == {"deploy", "notify"}
    assert dag.descendants("notify") == set()
    assert dag.descendants("docs") == set()


def test_descendants_diamond() -> None:
    dag = Dag({"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"]})
    assert dag.descendants("a") == {"b", "c", "d"}
    assert dag.descendants("b") == {"d"}


# --- large graphs: iterative and linear ----------------------------------------------------------


def reference_order(needs: dict[str, list[str]]) -> list[str]:
    """The order as specified (and as computed before Kahn's algorithm): repeatedly take the
    earliest-declared stage whose needs are all placed. Quadratic; fine for small graphs."""
    order: list[str] = []
    remaining = list(needs)
    while remaining:
        name = next(n for n in remaining if all(d in order for d in needs[n]))
        order.append(name)
        remaining.remove(name)
    return order


def reverse_chain(n: int) -> dict[str, list[str]]:
    """s{n-1} declared first, needing s{n-2} ... down to s0: the order is the reverse of the file."""
    return {f"s{i}": [f"s{i - 1}"] if i else [] for i in reversed(range(n))}


class CountingStatus(dict[str, StageStatus]):
    """A status map that counts lookups, to bound the work `propagate` does without timing it."""

    lookups = 0

    def get(self, key: str, default: StageStatus | None = None) -> StageStatus | None:  # type: ignore[override]
        self.lookups += 1
        return super().get(key, default)


@pytest.mark.parametrize("seed", range(30))
def test_order_matches_the_specified_order_on_random_graphs(seed: int) -> None:
    import random

    rng = random.Random(seed)
    names = [f"n{i}" for i in range(rng.randint(1, 25))]
    rank = {name: i for i, name in enumerate(rng.sample(names, len(names)))}  # a hidden valid order
    needs = {
        name: [d for d in rng.sample(names, rng.randint(0, 4)) if rank[d] < rank[name]] for name in names
    }
    dag = Dag(needs)
    assert dag.order == reference_order(needs)
    assert find_cycle(needs) is None


def test_reverse_chain_of_10000_orders_without_recursion() -> None:
    needs = reverse_chain(10_000)
    assert find_cycle(needs) is None
    dag = Dag(needs)
    assert dag.order == [f"s{i}" for i in range(10_000)]
    assert dag.ready({}) == ["s0"]


def test_cycle_at_the_end_of_a_long_chain_is_reported_with_its_path() -> None:
    needs = reverse_chain(5_000)
    needs["s0"] = ["s4999"]  # closes the whole chain into one cycle
    cycle = find_cycle(needs)
    assert cycle is not None and len(cycle) == 5_001
    assert cycle[:3] == ["s4999", "s4998", "s4997"] and cycle[-2:] == ["s0", "s4999"]
    with pytest.raises(ValueError, match="dependency cycle: s4999 -> s4998 -> "):
        Dag(needs)


def test_short_cycle_below_a_long_chain_reports_only_the_cycle() -> None:
    needs = {f"s{i}": [f"s{i + 1}"] for i in range(3_000)}
    needs["s3000"] = ["s3001"]
    needs["s3001"] = ["s3000"]
    assert find_cycle(needs) == ["s3000", "s3001", "s3000"]


def test_duplicate_needs_are_counted_consistently() -> None:
    dag = Dag({"a": [], "b": ["a", "a"]})
    assert dag.order == ["a", "b"]
    assert dag.dependents["a"] == ["b", "b"]


def test_propagate_is_one_pass_on_a_long_chain() -> None:
    n = 5_000
    dag = Dag(reverse_chain(n))
    status = CountingStatus({"s0": S.FAILED})
    assert dag.propagate(status) == [f"s{i}" for i in range(1, n)]
    # Each stage: its own status, then its one need's. Rounds until a fixpoint would be ~n²/2.
    assert status.lookups <= 2 * n
    assert all(status[f"s{i}"] is S.SKIPPED for i in range(1, n))


def test_propagate_marks_in_topological_order() -> None:
    dag = Dag({"f": [], "x1": ["f"], "y": ["x1"], "x2": ["f"]})
    assert dag.propagate({"f": S.FAILED}) == ["x1", "y", "x2"]


def test_ready_and_blocked_look_at_each_need_once() -> None:
    n = 2_000
    dag = Dag({"root": [], **{f"s{i}": ["root"] for i in range(n)}})
    status = CountingStatus({"root": S.SUCCEEDED})
    assert len(dag.ready(status)) == n
    assert status.lookups <= 2 * (n + 1)
    status = CountingStatus({"root": S.FAILED})
    assert len(dag.blocked(status)) == n
    assert status.lookups <= 2 * (n + 1)
