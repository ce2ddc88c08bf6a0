"""Reading charts/buildit without helm: its files, and the YAML skeleton of each template.

No helm binary can be had on these machines, so these helpers do NOT render templates. A
"skeleton" is a template with its comments and whole-line actions (`{{- if … }}`, `{{- end }}`,
`{{- include … | nindent 4 }}`) removed and each inline action replaced by the placeholder
`TEMPLATED`: what is left is the literal YAML the chart author wrote, which the tests parse and
assert on. Values computed by templates are not checked here (the helm suite does, when helm is
present)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[3]
CHART = ROOT / "charts" / "buildit"
TEMPLATES = CHART / "templates"
PLACEHOLDER = "TEMPLATED"

_COMMENT = re.compile(r"\{\{-?\s*/\*.*?\*/\s*-?\}\}", re.DOTALL)
_ACTION = re.compile(r"\{\{-?(.*?)-?\}\}", re.DOTALL)
_WHOLE_LINE_ACTION = re.compile(r"^\s*\{\{-?[^{}]*-?\}\}\s*$")


def template_names() -> list[str]:
    """Every file of templates/, sorted (the manifests, the helpers and NOTES.txt)."""
    return sorted(p.name for p in TEMPLATES.iterdir() if p.is_file())


def manifest_names() -> list[str]:
    """The templates that produce Kubernetes objects."""
    return [n for n in template_names() if n.endswith(".yaml")]


def text(name: str) -> str:
    """One template's source."""
    return (TEMPLATES / name).read_text(encoding="utf-8")


def actions(source: str) -> list[str]:
    """The inside of every `{{ … }}` of a template, comments removed, stripped."""
    return [m.group(1).strip() for m in _ACTION.finditer(_COMMENT.sub("", source))]


def skeleton(name: str) -> list[dict[str, Any]]:
    """The literal YAML documents of a manifest template (see the module docstring)."""
    source = _COMMENT.sub("", text(name))
    lines = [line for line in source.splitlines() if not _WHOLE_LINE_ACTION.match(line)]
    literal = _ACTION.sub(PLACEHOLDER, "\n".join(lines))
    return [doc for doc in yaml.safe_load_all(literal) if doc is not None]


def one(name: str, kind: str) -> dict[str, Any]:
    """The single document of `kind` in a manifest template's skeleton."""
    found = [doc for doc in skeleton(name) if doc.get("kind") == kind]
    assert len(found) == 1, f"{name}: expected one {kind}, found {len(found)}"
    return found[0]


def values() -> dict[str, Any]:
    """values.yaml, parsed."""
    loaded = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def code(name: str) -> str:
    """One template's source without its `{{/* comments */}}` (which may name what is absent)."""
    return _COMMENT.sub("", text(name))
