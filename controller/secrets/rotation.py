"""Rotating the master key (`buildit admin rotate-key`), offline: re-encrypt everything, then swap.

Order, chosen so that a crash at any point loses no key and no value:

1. the new key is written to `<data dir>/master.key.new` (0600, fsynced) before anything uses it;
2. one database transaction opens every sealed value (atrest.SEALED: secrets, webhook secrets,
   status tokens) with the current key, seals it with the new one, and replaces the key check:
   the database is under the old key or under the new one, never half of each;
3. `master.key` is kept as `master.key.old`, `master.key.new` becomes `master.key` (an atomic
   rename), and `master.key.old` is removed.

Interrupted after step 2, the database's key is in `master.key.new`: the controller's start says
so, and running the rotation again finishes step 3 (it recognises the new key by the key check).
Interrupted before, `master.key` still opens the database and the next rotation starts over.

With `BUILDIT_SECRET_KEY` the key is not in a file: step 3 is left to the operator, who puts the
contents of `master.key.new` into the variable wherever the controller runs, then deletes the file.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

from controller.db import write_transaction
from controller.secrets import atrest, keycheck, keys
from controller.secrets.crypto import SecretBox
from controller.secrets.keys import ENV_VAR, KEY_FILE, NEW_KEY_FILE, OLD_KEY_FILE, MasterKey, MasterKeyError


@dataclass(frozen=True)
class Rotated:
    """What a rotation did."""

    old_key_id: str
    new_key_id: str
    #: Values re-encrypted (0 when only an interrupted rotation's files were swapped).
    resealed: int
    #: Where the new key is: `master.key`, or `master.key.new` when the key comes from the environment.
    key_path: Path
    from_env: bool
    #: True when an interrupted rotation was finished rather than a new one made.
    resumed: bool = False


async def rotate(data_dir: Path, configured: MasterKey | None, new_key: MasterKey | None = None) -> Rotated:
    """Rotate the bound database to `new_key` (a generated one when None); see the module docstring.

    `configured` is the key from `BUILDIT_SECRET_KEY` (None: `<data dir>/master.key`). Raises
    MasterKeyError, changing nothing, when the current key is missing or not the database's, and
    atrest.ResealFailed (everything rolled back) when a stored value does not decrypt.
    """
    key_path, new_path = data_dir / KEY_FILE, data_dir / NEW_KEY_FILE
    from_env = configured is not None
    stored = await keycheck.load()
    if stored is None:
        raise MasterKeyError(
            "this database has no master key yet: start the controller once (it creates one), then rotate"
        )
    pending = keys.read_file(new_path)
    if pending is not None and stored.opens_with(SecretBox(pending)):
        # An earlier rotation re-encrypted the database and stopped before swapping the files.
        if not from_env:
            _swap(data_dir)
        return Rotated(stored.key_id, pending.key_id, 0, new_path if from_env else key_path, from_env, True)
    current = configured if configured is not None else keys.read_file(key_path)
    source = ENV_VAR if from_env else str(key_path)
    if current is None:
        raise MasterKeyError(
            f"no master key to rotate from: {key_path} does not exist and {ENV_VAR} is not set; the "
            f"database needs key {stored.key_id}"
        )
    old_box = SecretBox(current)
    if not stored.opens_with(old_box):
        raise MasterKeyError(
            f"{source} (key {current.key_id}) is not this database's master key (key {stored.key_id}); "
            "nothing was changed"
        )
    new_key = new_key if new_key is not None else MasterKey.generate()
    if new_key == current:
        raise MasterKeyError("the new key is the current key: give another one (or none, to generate one)")
    keys.write_file(new_path, new_key, replace=True)  # durable before the database depends on it
    new_box = SecretBox(new_key)
    async with write_transaction():
        count = await atrest.reseal(old_box, new_box)
        await keycheck.replace(new_box)
    if not from_env:
        _swap(data_dir)
    return Rotated(current.key_id, new_key.key_id, count, new_path if from_env else key_path, from_env)


def _swap(data_dir: Path) -> None:
    """`master.key.new` becomes `master.key`; the old key is kept as `master.key.old` until then."""
    key_path, new_path, old_path = data_dir / KEY_FILE, data_dir / NEW_KEY_FILE, data_dir / OLD_KEY_FILE
    with contextlib.suppress(FileNotFoundError):
        old_path.unlink()
    with contextlib.suppress(FileNotFoundError):
        os.link(key_path, old_path)
    os.replace(new_path, key_path)
    keys.sync_dir(data_dir)
    with contextlib.suppress(FileNotFoundError):
        old_path.unlink()
    keys.sync_dir(data_dir)
