"""The project's own packaging: building BuildIt (what `pip install` and `make install` do) says
nothing about our metadata. setuptools warns, in a box, when `project.license` is a table (the
form before PEP 639) and announces that such builds will stop working."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_building_the_project_prints_no_setuptools_warning_about_its_metadata(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for package in ("controller", "agent"):
        shutil.copytree(ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
    # The build backend runs in pip's isolated build environment, as for any user's install;
    # -v shows its whole output (warnings included).
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "-w", str(tmp_path / "dist"), str(source)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    assert list((tmp_path / "dist").glob("buildit-*.whl")), output[-4000:]
    noise = [
        line
        for line in output.splitlines()
        if "license" in line.lower() and ("warning" in line.lower() or "deprecat" in line.lower())
    ]
    assert not noise, "\n".join(noise)
