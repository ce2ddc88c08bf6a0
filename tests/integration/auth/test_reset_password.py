"""`buildit admin reset-password`: a lost password recovered offline, with the controller stopped."""

from __future__ import annotations

import re
import subprocess
import urllib.error
from pathlib import Path

import pytest

from tests.integration.fleet.harness import BUILDIT, Controller
from tests.support.credentials import admin_password, issue_key


def test_a_reset_password_works_and_the_old_one_does_not(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'buildit.db'}"
    controller = Controller(tmp_path, database).start()
    old = admin_password(tmp_path / "data")
    storage = ["--data-dir", str(tmp_path / "data"), "--database-url", database]
    # Refused while the controller runs on the data dir.
    running = subprocess.run(
        [BUILDIT, "admin", "reset-password", "admin", *storage], capture_output=True, text=True
    )
    assert running.returncode != 0, running.stdout
    controller.stop()
    done = subprocess.run(
        [BUILDIT, "admin", "reset-password", "admin", *storage], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    new = re.search(r"new password of admin: (\S+)", done.stdout).group(1)  # type: ignore[union-attr]
    unknown = subprocess.run(
        [BUILDIT, "admin", "reset-password", "nobody", *storage], capture_output=True, text=True, timeout=120
    )
    assert unknown.returncode != 0 and "no user named 'nobody'" in unknown.stderr
    controller.start()
    try:
        assert issue_key(controller.base_url, "admin", new).startswith("bk_")
        with pytest.raises(urllib.error.HTTPError) as refused:
            issue_key(controller.base_url, "admin", old)
        assert refused.value.code == 401
    finally:
        controller.stop()
