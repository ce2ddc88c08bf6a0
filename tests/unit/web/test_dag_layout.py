"""The run page's DAG layout: topological columns, file order within a column, rightward edges."""

from __future__ import annotations

import pytest

from controller.web.dag_layout import BOX_H, BOX_W, COL_GAP, MARGIN, ROW_GAP, LayoutError, columns, layout

DAG = [
    ("setup", []),
    ("lint", ["setup"]),
    ("test-unit", ["setup"]),
    ("test-integration", ["setup"]),
    ("package", ["lint", "test-unit", "test-integration"]),
]


def test_columns_are_the_longest_needs_chain() -> None:
    assert columns(DAG) == {"setup": 0, "lint": 1, "test-unit": 1, "test-integration": 1, "package": 2}
    # A need that skips a column still lands after its deepest need.
    assert columns([("a", []), ("b", ["a"]), ("c", ["a", "b"])]) == {"a": 0, "b": 1, "c": 2}


def test_boxes_sit_in_columns_in_file_order() -> None:
    out = layout(DAG)
    assert [(n.name, n.column, n.row) for n in out.nodes] == [
        ("setup", 0, 0),
        ("lint", 1, 0),
        ("test-unit", 1, 1),
        ("test-integration", 1, 2),
        ("package", 2, 0),
    ]
    unit = out.node("test-unit")
    assert (unit.x, unit.y) == (MARGIN + BOX_W + COL_GAP, MARGIN + BOX_H + ROW_GAP)
    assert out.width == 2 * MARGIN + 3 * BOX_W + 2 * COL_GAP
    assert out.height == 2 * MARGIN + 3 * BOX_H + 2 * ROW_GAP
    for node in out.nodes:  # every box is inside the drawing
        assert node.x >= 0 and node.x + node.width <= out.width
        assert node.y >= 0 and node.y + node.height <= out.height


def test_an_edge_per_need_from_the_right_of_the_need_to_the_left_of_the_stage() -> None:
    out = layout(DAG)
    assert {(e.source, e.target) for e in out.edges} == {
        ("setup", "lint"),
        ("setup", "test-unit"),
        ("setup", "test-integration"),
        ("lint", "package"),
        ("test-unit", "package"),
        ("test-integration", "package"),
    }
    edge = next(e for e in out.edges if (e.source, e.target) == ("setup", "test-unit"))
    setup, unit = out.node("setup"), out.node("test-unit")
    assert edge.path.startswith(f"M{setup.x + setup.width},{setup.y + setup.height // 2} ")
    assert edge.path.endswith(f" {unit.x},{unit.y + unit.height // 2}")


def test_independent_stages_share_the_first_column() -> None:
    out = layout([("a", []), ("b", []), ("c", [])])
    assert [(n.column, n.row) for n in out.nodes] == [(0, 0), (0, 1), (0, 2)]
    assert out.edges == ()
    assert out.width == 2 * MARGIN + BOX_W


def test_no_stages_is_an_empty_drawing() -> None:
    out = layout([])
    assert out.nodes == () and out.edges == ()
    assert out.width == 2 * MARGIN and out.height == 2 * MARGIN


def test_a_cycle_or_an_unknown_need_is_an_error_naming_the_stage() -> None:
    with pytest.raises(LayoutError, match="cycle"):
        layout([("a", ["b"]), ("b", ["a"])])
    with pytest.raises(LayoutError, match="'a' needs 'missing'"):
        layout([("a", ["missing"])])
