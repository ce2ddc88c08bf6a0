"""`buildit login` keeps a key (0600) that `buildit apikey` and `buildit logout` then use."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

from tests.integration.fleet.harness import BUILDIT, Controller
from tests.support.credentials import admin_password


def test_login_stores_a_private_key_the_other_verbs_use(tmp_path: Path) -> None:
    controller = Controller(tmp_path, f"sqlite:///{tmp_path / 'buildit.db'}").start()
    env = {k: v for k, v in os.environ.items() if k not in ("BUILDIT_TOKEN", "BUILDIT_URL")}
    env["XDG_CONFIG_HOME"] = str(tmp_path / "config")
    server = ["--server", controller.base_url]

    def cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [BUILDIT, *args], input=stdin, capture_output=True, text=True, env=env, timeout=120
        )

    try:
        wrong = cli("login", *server, "--password-stdin", stdin="not the password\n")
        assert wrong.returncode != 0 and "wrong user name or password" in wrong.stderr
        done = cli("login", *server, "--password-stdin", stdin=admin_password(tmp_path / "data") + "\n")
        assert done.returncode == 0, done.stderr
        stored = tmp_path / "config" / "buildit" / "credentials.json"
        assert stat.S_IMODE(stored.stat().st_mode) == 0o600
        key = json.loads(stored.read_text())[controller.base_url]
        assert key.startswith("bk_") and key not in done.stdout
        listed = cli("apikey", "list", *server)
        assert listed.returncode == 0 and key.split("_")[1] in listed.stdout
        out = cli("logout", *server)
        assert out.returncode == 0, out.stderr
        assert controller.request("GET", "/api/v1/me", key=key)[0] == 401  # revoked on the server
        after = cli("apikey", "list", *server)
        assert after.returncode != 0 and "buildit login" in after.stderr
    finally:
        controller.stop()
