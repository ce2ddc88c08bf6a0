"""The pipeline page's KDL highlighter: token kinds, lines kept, nothing lost."""

from __future__ import annotations

from controller.web.kdl_highlight import highlight

SOURCE = """// a comment
pipeline "app"
stage "build" needs="test" {
    retries 2; run r#"echo "raw""#
    /* block
       comment */ env "A" true
}
"""


def kinds(source: str) -> list[list[tuple[str, str]]]:
    return [
        [(t.kind, t.text) for t in line if t.kind != "text" or t.text.strip()] for line in highlight(source)
    ]


def test_tokens_by_kind() -> None:
    lines = kinds(SOURCE)
    assert lines[0] == [("comment", "// a comment")]
    assert lines[1] == [("node", "pipeline"), ("string", '"app"')]
    assert lines[2] == [
        ("node", "stage"),
        ("string", '"build"'),
        ("prop", "needs"),
        ("punct", "="),
        ("string", '"test"'),
        ("punct", "{"),
    ]
    assert lines[3] == [
        ("node", "retries"),
        ("number", "2"),
        ("punct", ";"),
        ("node", "run"),
        ("string", 'r#"echo "raw""#'),
    ]
    assert lines[4] == [("comment", "/* block")]
    assert lines[5][0] == ("comment", "       comment */")
    assert lines[5][1:] == [("node", "env"), ("string", '"A"'), ("keyword", "true")]


def test_every_character_is_kept_line_by_line() -> None:
    lines = highlight(SOURCE)
    assert ["".join(t.text for t in line) for line in lines] == SOURCE.splitlines()


def test_unterminated_input_is_highlighted_not_rejected() -> None:
    lines = highlight('stage "open\n/* never closed')
    assert "".join(t.text for t in lines[0]) == 'stage "open'
    assert lines[1][0].kind == "string"  # the string runs on: the file is broken, the page is not


def test_html_is_just_text_here() -> None:
    [[_node, _space, string]] = highlight('pipeline "<script>alert(1)</script>"')
    assert string.text == '"<script>alert(1)</script>"'  # escaping is the template's job (autoescape)
