"""Workspaces: artifacts in and out with traversal/symlink refusal, and filling from source."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest

from agent.workspace import (
    ArtifactError,
    collect_artifacts,
    copy_source,
    create_artifact_file,
    find_artifacts,
    restore_artifacts,
)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def layout(tmp_path: Path) -> tuple[Path, Path, Path]:
    """(workspace, dest, outside): a workspace with a few files, an empty dest, a dir outside both."""
    ws, dest, outside = tmp_path / "ws", tmp_path / "dest", tmp_path / "outside"
    write(ws / "dist" / "app-1.0.whl", "wheel")
    write(ws / "dist" / "app-1.0.tar.gz", "sdist")
    write(ws / "dist" / "sub" / "deep" / "notes.txt", "deep")
    write(ws / "report.xml", "<xml/>")
    write(outside / "secret.txt", "do not copy")
    dest.mkdir()
    return ws, dest, outside


def files_under(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): p.read_text() for p in root.rglob("*") if p.is_file()}


# --- collect -------------------------------------------------------------------------------------


def test_collect_glob_keeps_relative_paths(layout: tuple[Path, Path, Path]) -> None:
    ws, dest, _ = layout
    copied, empty = collect_artifacts(ws, ["dist/*.whl", "report.xml"], dest)
    assert copied == ["dist/app-1.0.whl", "report.xml"]
    assert empty == []
    assert files_under(dest) == {"dist/app-1.0.whl": "wheel", "report.xml": "<xml/>"}


def test_collect_directory_recursively(layout: tuple[Path, Path, Path]) -> None:
    ws, dest, _ = layout
    copied, empty = collect_artifacts(ws, ["dist"], dest)
    assert copied == ["dist/app-1.0.tar.gz", "dist/app-1.0.whl", "dist/sub/deep/notes.txt"]
    assert empty == []
    assert files_under(dest) == {
        "dist/app-1.0.tar.gz": "sdist",
        "dist/app-1.0.whl": "wheel",
        "dist/sub/deep/notes.txt": "deep",
    }


def test_collect_recursive_glob(layout: tuple[Path, Path, Path]) -> None:
    ws, dest, _ = layout
    copied, _ = collect_artifacts(ws, ["**/*.txt"], dest)
    assert copied == ["dist/sub/deep/notes.txt"]


def test_collect_patterns_matching_nothing_are_returned(layout: tuple[Path, Path, Path]) -> None:
    ws, dest, _ = layout
    copied, empty = collect_artifacts(ws, ["missing/*", "report.xml", "*.nope"], dest)
    assert copied == ["report.xml"]
    assert empty == ["missing/*", "*.nope"]


def test_collect_overlapping_patterns_copy_once(layout: tuple[Path, Path, Path]) -> None:
    ws, dest, _ = layout
    copied, _ = collect_artifacts(ws, ["dist", "dist/*.whl"], dest)
    assert copied.count("dist/app-1.0.whl") == 1


def test_collect_nothing(layout: tuple[Path, Path, Path]) -> None:
    ws, dest, _ = layout
    assert collect_artifacts(ws, [], dest) == ([], [])
    assert files_under(dest) == {}


@pytest.mark.parametrize(
    ("pattern", "rule"),
    [
        ("../x", "contains '..'"),
        ("dist/../../outside/secret.txt", "contains '..'"),
        ("/etc/passwd", "is absolute"),
    ],
)
def test_collect_refuses_paths_leaving_the_workspace(
    layout: tuple[Path, Path, Path], pattern: str, rule: str
) -> None:
    ws, dest, _ = layout
    with pytest.raises(ArtifactError) as caught:
        collect_artifacts(ws, [pattern], dest)
    assert f"artifact pattern '{pattern}' {rule}" in str(caught.value)
    assert files_under(dest) == {}


def test_collect_refuses_symlink_to_a_file_outside(layout: tuple[Path, Path, Path]) -> None:
    ws, dest, outside = layout
    (ws / "leak.txt").symlink_to(outside / "secret.txt")
    with pytest.raises(ArtifactError) as caught:
        collect_artifacts(ws, ["leak.txt"], dest)
    assert str(caught.value) == "artifact 'leak.txt' is a symlink pointing outside the workspace; refusing it"
    assert files_under(dest) == {}


def test_collect_refuses_relative_symlink_outside(layout: tuple[Path, Path, Path]) -> None:
    ws, dest, _ = layout
    (ws / "dist" / "rel").symlink_to("../../outside/secret.txt")
    with pytest.raises(ArtifactError, match="'dist/rel' is a symlink pointing outside"):
        collect_artifacts(ws, ["dist/rel"], dest)


def test_collect_refuses_symlink_outside_found_inside_a_directory(layout: tuple[Path, Path, Path]) -> None:
    ws, dest, outside = layout
    (ws / "dist" / "sub" / "evil").symlink_to(outside / "secret.txt")
    with pytest.raises(ArtifactError, match="'dist/sub/evil' is a symlink pointing outside the workspace"):
        collect_artifacts(ws, ["dist"], dest)
    assert "do not copy" not in files_under(dest).values()


def test_collect_refuses_directory_symlink_outside(layout: tuple[Path, Path, Path]) -> None:
    ws, dest, outside = layout
    (ws / "dist" / "linkdir").symlink_to(outside, target_is_directory=True)
    with pytest.raises(ArtifactError, match="'dist/linkdir' is a symlink pointing outside"):
        collect_artifacts(ws, ["dist"], dest)
    with pytest.raises(ArtifactError, match="pointing outside"):
        collect_artifacts(ws, ["dist/linkdir/*"], dest)
    assert "do not copy" not in files_under(dest).values()


def test_collect_accepts_symlink_pointing_inside(layout: tuple[Path, Path, Path]) -> None:
    ws, dest, _ = layout
    (ws / "latest.whl").symlink_to(ws / "dist" / "app-1.0.whl")
    (ws / "rel.xml").symlink_to("report.xml")
    copied, empty = collect_artifacts(ws, ["latest.whl", "rel.xml"], dest)
    assert copied == ["latest.whl", "rel.xml"]
    assert empty == []
    # The content is copied, not a link.
    assert not (dest / "latest.whl").is_symlink()
    assert (dest / "latest.whl").read_text() == "wheel"
    assert (dest / "rel.xml").read_text() == "<xml/>"


def test_collect_works_when_the_workspace_path_itself_is_a_symlink(
    layout: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    ws, dest, _ = layout
    alias = tmp_path / "alias"
    alias.symlink_to(ws, target_is_directory=True)
    copied, _ = collect_artifacts(alias, ["report.xml"], dest)
    assert copied == ["report.xml"]


# --- restore -------------------------------------------------------------------------------------


def test_restore_recreates_relative_paths(tmp_path: Path) -> None:
    store, ws = tmp_path / "store", tmp_path / "ws"
    write(store / "dist" / "app.whl", "wheel")
    write(store / "a" / "b" / "c.txt", "c")
    write(store / "top.txt", "top")
    write(ws / "existing.txt", "keep")
    restored = restore_artifacts(store, ws)
    assert restored == ["a/b/c.txt", "dist/app.whl", "top.txt"]
    assert files_under(ws) == {
        "a/b/c.txt": "c",
        "dist/app.whl": "wheel",
        "top.txt": "top",
        "existing.txt": "keep",
    }


def test_restore_overwrites_stale_files(tmp_path: Path) -> None:
    store, ws = tmp_path / "store", tmp_path / "ws"
    write(store / "out.txt", "new")
    write(ws / "out.txt", "old")
    restore_artifacts(store, ws)
    assert (ws / "out.txt").read_text() == "new"


def test_restore_from_missing_store_is_empty(tmp_path: Path) -> None:
    assert restore_artifacts(tmp_path / "nope", tmp_path / "ws") == []


def test_restore_skips_symlinks_in_the_store(tmp_path: Path) -> None:
    store, ws, outside = tmp_path / "store", tmp_path / "ws", tmp_path / "outside"
    write(outside / "secret.txt", "do not copy")
    write(store / "real.txt", "real")
    store.joinpath("link.txt").symlink_to(outside / "secret.txt")
    assert restore_artifacts(store, ws) == ["real.txt"]
    assert not (ws / "link.txt").exists()


def test_restore_refuses_directory_symlink_in_workspace_pointing_outside(tmp_path: Path) -> None:
    store, ws, outside = tmp_path / "store", tmp_path / "ws", tmp_path / "outside"
    write(store / "out" / "file.txt", "artifact")
    outside.mkdir()
    ws.mkdir()
    (ws / "out").symlink_to(outside, target_is_directory=True)
    with pytest.raises(ArtifactError, match=r"'out/file\.txt' would be restored outside the workspace"):
        restore_artifacts(store, ws)
    assert not (outside / "file.txt").exists()


def test_restore_does_not_write_through_a_file_symlink_in_workspace(tmp_path: Path) -> None:
    # BUG: agent/workspace.py restore_artifacts only checks that target.parent is inside the workspace;
    # when the target itself is a symlink (e.g. committed in the repo, or left by an earlier stage)
    # pointing outside, shutil.copy2(file, target) follows it and overwrites the outside file
    # (observed: outside/victim becomes "artifact"). The module promises nothing is written outside.
    # Expected: ArtifactError, or the link replaced inside the workspace; never the outside file changed.
    store, ws, outside = tmp_path / "store", tmp_path / "ws", tmp_path / "outside"
    write(store / "dist" / "app.whl", "artifact")
    victim = write(outside / "victim", "original")
    (ws / "dist").mkdir(parents=True)
    (ws / "dist" / "app.whl").symlink_to(victim)
    with contextlib.suppress(ArtifactError):
        restore_artifacts(store, ws)
    assert victim.read_text() == "original"


def test_collect_then_restore_round_trip(layout: tuple[Path, Path, Path], tmp_path: Path) -> None:
    ws, dest, _ = layout
    collect_artifacts(ws, ["dist", "report.xml"], dest)
    other = tmp_path / "other-ws"
    restored = restore_artifacts(dest, other)
    assert restored == ["dist/app-1.0.tar.gz", "dist/app-1.0.whl", "dist/sub/deep/notes.txt", "report.xml"]
    assert files_under(other) == files_under(dest)


# --- copy_source ---------------------------------------------------------------------------------


@pytest.fixture
def source_tree(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    write(src / "README.md", "readme")
    write(src / "pkg" / "mod.py", "code")
    write(src / "pkg" / "__pycache__" / "mod.pyc", "bytecode")
    write(src / ".git" / "HEAD", "ref")
    write(src / ".venv" / "bin" / "python", "py")
    write(src / "web" / "node_modules" / "x" / "index.js", "js")
    write(src / ".buildit" / "runs" / "1.log", "log")
    write(src / ".github" / "ci.yml", "kept")
    return src


def test_copy_source_whole_tree_skips_tool_dirs(source_tree: Path, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    count = copy_source(source_tree, None, ws)
    assert files_under(ws) == {"README.md": "readme", "pkg/mod.py": "code", ".github/ci.yml": "kept"}
    assert count == 3


def test_copy_source_whole_tree_keeps_symlinks_as_links(source_tree: Path, tmp_path: Path) -> None:
    (source_tree / "link.md").symlink_to("README.md")
    ws = tmp_path / "ws"
    assert copy_source(source_tree, None, ws) == 4
    assert (ws / "link.md").is_symlink()
    assert os.readlink(ws / "link.md") == "README.md"


def test_copy_source_exact_file_list(source_tree: Path, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    count = copy_source(source_tree, ["pkg/mod.py", "deleted.txt", "pkg/__pycache__/mod.pyc"], ws)
    assert count == 2  # the missing (deleted, uncommitted) file is skipped
    assert files_under(ws) == {"pkg/mod.py": "code", "pkg/__pycache__/mod.pyc": "bytecode"}


def test_copy_source_file_list_keeps_symlinks_as_links(source_tree: Path, tmp_path: Path) -> None:
    (source_tree / "dangling").symlink_to("does-not-exist")
    ws = tmp_path / "ws"
    assert copy_source(source_tree, ["dangling"], ws) == 1
    assert (ws / "dangling").is_symlink()
    assert os.readlink(ws / "dangling") == "does-not-exist"


def test_copy_source_empty_list_creates_empty_workspace(source_tree: Path, tmp_path: Path) -> None:
    ws = tmp_path / "ws" / "nested"
    assert copy_source(source_tree, [], ws) == 0
    assert ws.is_dir()
    assert list(ws.iterdir()) == []


# --- artifacts over the wire (find, path rules, writing one file) ----------------------------------


def test_find_lists_files_to_upload_without_copying(layout: tuple[Path, Path, Path]) -> None:
    ws, dest, _ = layout
    (ws / "dist" / "latest.whl").symlink_to("app-1.0.whl")  # a link inside is read through
    files, empty = find_artifacts(ws, ["dist/*.whl", "report.xml", "dist/*.whl", "nothing/*"])
    assert [rel for rel, _ in files] == ["dist/app-1.0.whl", "dist/latest.whl", "report.xml"]
    assert [path.read_text() for _, path in files] == ["wheel", "wheel", "<xml/>"]
    assert empty == ["nothing/*"]
    assert list(dest.iterdir()) == []


def test_find_refuses_a_symlink_out(layout: tuple[Path, Path, Path]) -> None:
    ws, _, outside = layout
    (ws / "leak.txt").symlink_to(outside / "secret.txt")
    with pytest.raises(ArtifactError, match=r"'leak\.txt' is a symlink pointing outside the workspace"):
        find_artifacts(ws, ["*.txt"])


def test_create_artifact_file_makes_directories_and_replaces_links(tmp_path: Path) -> None:
    ws, outside = tmp_path / "ws", tmp_path / "outside"
    ws.mkdir()
    outside.mkdir()
    (ws / "inside").mkdir()
    (ws / "alias").symlink_to("inside")  # a directory link inside the workspace may be followed
    (ws / "file.txt").symlink_to(outside / "target.txt")  # a link at the target is replaced
    (ws / "was-a-dir").mkdir()
    for rel in ("new/deep/a.txt", "alias/b.txt", "file.txt", "was-a-dir"):
        with create_artifact_file(ws, rel) as handle:
            handle.write(rel.encode())
    assert (ws / "new" / "deep" / "a.txt").read_text() == "new/deep/a.txt"
    assert (ws / "inside" / "b.txt").read_text() == "alias/b.txt"
    assert not (ws / "file.txt").is_symlink() and (ws / "file.txt").read_text() == "file.txt"
    assert (ws / "was-a-dir").read_text() == "was-a-dir"
    assert list(outside.iterdir()) == []


def test_create_artifact_file_never_creates_anything_through_a_link_out(tmp_path: Path) -> None:
    ws, outside = tmp_path / "ws", tmp_path / "outside"
    ws.mkdir()
    outside.mkdir()
    (ws / "out").symlink_to(outside)
    for rel in ("out/a.txt", "out/new/dir/a.txt", "../a.txt", "/tmp/a.txt"):
        with pytest.raises(ArtifactError):
            create_artifact_file(ws, rel)
    assert list(outside.iterdir()) == []
