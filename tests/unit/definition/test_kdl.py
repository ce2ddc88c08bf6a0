"""KDL parsing with positions, and syntax errors turned into diagnostics with hints."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from controller.definition.kdl import RawNode, SourceMap, _plain, parse
from controller.definition.model import Diagnostic


def parsed(source: str) -> tuple[list[RawNode], SourceMap]:
    result = parse(source, "f.kdl")
    assert not isinstance(result, Diagnostic), result.format(source)
    return result


def error(source: str, filename: str = "f.kdl") -> Diagnostic:
    result = parse(source, filename)
    assert isinstance(result, Diagnostic), "expected a syntax error"
    return result


# --- positions -------------------------------------------------------------------------------


def test_top_level_nodes_carry_one_based_line_and_col() -> None:
    source = '// a comment\npipeline "p"\n\n  stage "b" {\n    run "x"\n  }\n'
    nodes, _ = parsed(source)
    assert [(n.name, n.line, n.col) for n in nodes] == [("pipeline", 2, 1), ("stage", 4, 3)]


def test_children_carry_their_own_positions() -> None:
    source = 'stage "a" {\n    image "py"\n        retries 2\n}\nstage "b" { run "x"; run "y"; }\n'
    nodes, _ = parsed(source)
    first, second = nodes
    assert [(c.name, c.line, c.col) for c in first.children] == [("image", 2, 5), ("retries", 3, 9)]
    # Nodes in a one-line block: `run` starts at columns 13 and 22 of line 5.
    assert [(c.name, c.line, c.col) for c in second.children] == [("run", 5, 13), ("run", 5, 22)]


def test_offset_points_at_the_node_name_in_the_source() -> None:
    source = 'pipeline "p"\n   stage "a" { run "x"; }\n'
    nodes, _ = parsed(source)
    for node in [*nodes, *nodes[1].children]:
        assert source[node.offset : node.offset + len(node.name)] == node.name


def test_crlf_line_endings_keep_columns_right() -> None:
    nodes, _ = parsed('a\r\n  b "x"\r\n')
    assert [(n.name, n.line, n.col) for n in nodes] == [("a", 1, 1), ("b", 2, 3)]


def test_slashdash_commented_node_is_dropped() -> None:
    nodes, _ = parsed('pipeline "p"\n/- stage "gone" { run "x"; }\nstage "kept" { run "y"; }\n')
    assert [n.args for n in nodes] == [["p"], ["kept"]]
    assert nodes[1].line == 3


def test_empty_document_parses_to_no_nodes() -> None:
    nodes, _ = parsed("")
    assert nodes == []


# --- values ----------------------------------------------------------------------------------


def test_values_become_plain_python_values() -> None:
    nodes, _ = parsed('n 1 2.5 3.0 true false null "s" r"raw\\n" (u8)7 0x10 k="v" t=(tag)"x"\n')
    node = nodes[0]
    assert node.args == [1, 2.5, 3, True, False, None, "s", "raw\\n", 7, 16]
    assert isinstance(node.args[0], int) and isinstance(node.args[2], int)
    assert isinstance(node.args[1], float)
    assert node.props == {"k": "v", "t": "x"}


def test_plain_unwraps_and_normalises() -> None:
    assert _plain(2.0) == 2 and isinstance(_plain(2.0), int)
    assert _plain(2.5) == 2.5
    assert _plain(True) is True
    assert _plain(None) is None
    assert _plain(SimpleNamespace(value="inner")) == "inner"
    assert _plain(SimpleNamespace(value=[1, 2])) == "[1, 2]"


def test_has_block() -> None:
    nodes, _ = parsed('stage "a"\nstage "b" {}\nstage "c" {\n  run "x"\n}\n')
    assert [n.has_block for n in nodes] == [False, True, True]
    assert nodes[1].children == []
    assert [c.name for c in nodes[2].children] == ["run"]


# --- SourceMap -------------------------------------------------------------------------------


def test_source_map_position() -> None:
    smap = SourceMap("ab\ncde\n\nf")
    assert smap.position(0) == (1, 1)
    assert smap.position(1) == (1, 2)
    assert smap.position(2) == (1, 3)  # the newline itself belongs to line 1
    assert smap.position(3) == (2, 1)
    assert smap.position(5) == (2, 3)
    assert smap.position(7) == (3, 1)
    assert smap.position(8) == (4, 1)


def test_find_on_line_searches_only_the_node_line_after_its_start() -> None:
    source = 'a "needs="; stage "a" needs="b" {\n  run "run"\n}\n'
    nodes, smap = parsed(source)
    stage = nodes[1]
    assert (stage.line, stage.col) == (1, 13)
    # The earlier `needs=` (inside node `a`, before the stage starts) is not the one found.
    assert smap.find_on_line(stage, "needs=") == (1, 23)
    # Only on line 2: falls back to the node's own position.
    assert smap.find_on_line(stage, "run") == (1, 13)
    # Only before the node start: also falls back.
    assert smap.find_on_line(stage, 'a "') == (1, 13)


# --- syntax errors ---------------------------------------------------------------------------


def test_one_line_block_pitfall_points_at_the_brace_and_shows_the_fix() -> None:
    source = 'pipeline "p"\nstage "a" { run "x" }\n'
    diag = error(source)
    assert (diag.file, diag.line, diag.col) == ("f.kdl", 2, 21)
    assert diag.message == "KDL syntax error: junk after node, before terminator."
    assert 'write: stage "a" { run "x"; }' in diag.hint
    assert "';'" in diag.hint


def test_one_line_block_fix_with_several_nodes_and_indentation() -> None:
    diag = error('  stage "a" { image "x"; run "y" }\n')
    assert (diag.line, diag.col) == (1, 34)
    assert diag.hint.endswith('write: stage "a" { image "x"; run "y"; }')


@pytest.mark.parametrize(
    "line",
    ['stage "a" { run "x" }', 'stage "b" needs="a" { image "py"; run "make" }', 'stage "c" {run "z"}'],
)
def test_the_suggested_fix_actually_parses(line: str) -> None:
    diag = error(f'pipeline "p"\n{line}\n')
    fixed = diag.hint.split("write: ", 1)[1]
    nodes, _ = parsed(f'pipeline "p"\n{fixed}\n')
    assert nodes[1].children, "the fixed line should keep the block's children"


def test_unquoted_words_get_the_quoting_hint() -> None:
    diag = error('pipeline "p"\nstage "a" {\n  run echo\n}\n')
    assert (diag.line, diag.col) == (3, 7)
    assert "junk after node" in diag.message
    assert 'run "echo hi"' in diag.hint
    assert "write:" not in diag.hint


def test_unclosed_block_points_at_the_opening_brace() -> None:
    diag = error('pipeline "p"\n\nstage "build" {\n    run "make"\n')
    assert (diag.line, diag.col) == (3, 15)
    assert "end of child list" in diag.message
    assert "never closed" in diag.hint


def test_stray_closing_brace() -> None:
    diag = error('pipeline "p"\n}\n')
    assert (diag.line, diag.col) == (2, 1)
    assert diag.message == "KDL syntax error: expected a node."
    assert "closes no block" in diag.hint


def test_unquoted_property_value() -> None:
    diag = error('pipeline "p"\nstage "a" needs=b { run "x"; }\n')
    assert (diag.line, diag.col) == (2, 17)
    assert "prop=" in diag.message
    assert 'key="value"' in diag.hint


def test_unterminated_string_is_still_a_positioned_diagnostic() -> None:
    diag = error('pipeline "p"\na "unterminated\n', filename="ci/.buildit.kdl")
    assert (diag.file, diag.line, diag.col) == ("ci/.buildit.kdl", 2, 3)
    assert diag.message.startswith("KDL syntax error: ")
    assert diag.message.endswith(".")
    assert diag.severity == "error"


def test_each_node_knows_where_the_next_one_starts() -> None:
    source = "a 1; b { c; }\nd\n"
    nodes, _ = parsed(source)
    a, b, d = nodes
    assert (a.end, b.end, b.children[0].end, d.end) == (5, 9, 14, len(source))


def test_has_block_looks_only_at_the_node_s_own_text() -> None:
    # On one line: the block after `stage "b"` is not `stage "a"`'s.
    nodes, _ = parsed('stage "a"; stage "b" { }; stage "c"\n')
    assert [n.has_block for n in nodes] == [False, True, False]


def test_lookups_on_one_long_line_stop_at_the_next_node() -> None:
    # A whole file on one line: each lookup reads only its node's own text, so diagnostics for every
    # node of a 1 MiB one-line file cost a read of the file, not a read of the file per node.
    source = "".join(f'n{i} "v{i}"; ' for i in range(2_000))
    nodes, smap = parsed(source)
    assert sum(n.end - n.offset for n in nodes) == len(source)  # disjoint extents, in order
    assert smap.find_on_line(nodes[0], '"v0"') == (1, 4)
    assert smap.find_on_line(nodes[0], '"v1999"') == (1, 1)  # on the line, but past the next node
