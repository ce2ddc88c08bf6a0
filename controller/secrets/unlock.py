"""Opening the master key at controller start: found, checked against the database, or no start.

Where the key comes from: `BUILDIT_SECRET_KEY` (base64 of 32 bytes) when set, else the file
`<data dir>/master.key`. Then, against the database's key check (keycheck.py):

- the database has no check yet (a new installation, or one from before secrets): the key is the
  configured one, else the file's, else a new key written to `master.key` (mode 0600); it becomes
  the database's key. A database that already holds sealed values without a check is refused
  (a key was lost: a new one could not read them).
- the database has a check: the key must open it. A missing key or another key stops the start
  with a message saying what to restore or set; nothing is changed, nothing is generated.

Then plain-text values left from before sealing are sealed (atrest.seal_plaintext).
"""

from __future__ import annotations

import logging
from pathlib import Path

from controller.secrets import atrest, keycheck, keys
from controller.secrets.crypto import SecretBox
from controller.secrets.keycheck import KeyCheck
from controller.secrets.keys import ENV_VAR, KEY_FILE, NEW_KEY_FILE, MasterKey, MasterKeyError

log = logging.getLogger(__name__)


async def unlock(data_dir: Path, configured: MasterKey | None) -> SecretBox:
    """The controller's SecretBox (see the module docstring); MasterKeyError when it must not start.

    `configured` is the key from `BUILDIT_SECRET_KEY` (None: use `<data dir>/master.key`).
    """
    key_file = data_dir / KEY_FILE
    key = configured if configured is not None else keys.read_file(key_file)
    stored = await keycheck.load()
    if stored is None:
        if await atrest.any_sealed():
            raise MasterKeyError(
                "this database holds encrypted values but no record of their master key (its key check "
                f"row is gone): restore the database from a backup together with {key_file}; "
                "the controller did not start and nothing was changed"
            )
        if key is None:
            key = keys.write_file(key_file, MasterKey.generate())
            log.info("generated the master key %s in %s (mode 0600): back it up", key.key_id, key_file)
        stored = await keycheck.create(SecretBox(key))
    if key is None:
        raise MasterKeyError(_missing(data_dir, stored))
    box = SecretBox(key)
    if not stored.opens_with(box):
        raise MasterKeyError(_mismatch(data_dir, stored, key, configured is not None))
    await atrest.seal_plaintext(box)
    return box


def _missing(data_dir: Path, stored: KeyCheck) -> str:
    return (
        f"this database's secrets are encrypted with master key {stored.key_id}, but there is no key: "
        f"restore {data_dir / KEY_FILE} (mode 0600) from your backup, or set {ENV_VAR} to that key "
        f"(base64). {_interrupted(data_dir, stored)}The controller did not start; nothing was changed."
    )


def _mismatch(data_dir: Path, stored: KeyCheck, key: MasterKey, from_env: bool) -> str:
    source = ENV_VAR if from_env else str(data_dir / KEY_FILE)
    fix = (
        f"set {ENV_VAR} to the database's key (or unset it to use {data_dir / KEY_FILE})"
        if from_env
        else f"restore {data_dir / KEY_FILE} from your backup, or set {ENV_VAR} to the database's key"
    )
    return (
        f"the master key does not match the one this database was encrypted with (the database needs "
        f"key {stored.key_id}; {source} holds key {key.key_id}): {fix}. "
        f"{_interrupted(data_dir, stored)}The controller did not start; nothing was changed."
    )


def _interrupted(data_dir: Path, stored: KeyCheck) -> str:
    """A hint when a rotation left the database's key in `master.key.new`."""
    try:
        pending = keys.read_file(data_dir / NEW_KEY_FILE)
    except MasterKeyError:
        return ""
    if pending is None or not stored.opens_with(SecretBox(pending)):
        return ""
    return (
        f"The database's key is in {data_dir / NEW_KEY_FILE} (left by `buildit admin rotate-key`): run "
        f"`buildit admin rotate-key` again to finish the rotation, or set {ENV_VAR} to that file's "
        "contents. "
    )
