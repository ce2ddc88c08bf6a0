"""The key check: one row proving which master key the database's sealed values are under.

It holds a known constant sealed under the key, and the key's fingerprint (`key_id`). A key that
opens it is the database's key; any other key is refused before it can produce garbage or seal
new values the rest of the database could not be read with.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from controller.secrets import aad
from controller.secrets.crypto import SecretBox, Undecryptable
from controller.secrets.tables import SecretKeyCheck

ROW_NAME = "master"


@dataclass(frozen=True)
class KeyCheck:
    """The stored check: the fingerprint of the database's key and the sealed constant."""

    key_id: str
    check_value: str

    def opens_with(self, box: SecretBox) -> bool:
        """Whether `box`'s key is the database's key."""
        try:
            return box.open(self.check_value, aad.KEY_CHECK) == aad.KEY_CHECK_PLAINTEXT
        except Undecryptable:
            return False


async def load() -> KeyCheck | None:
    """The database's key check; None for a database no key was ever checked against."""
    row = (
        await SecretKeyCheck.select(SecretKeyCheck.key_id, SecretKeyCheck.check_value)
        .where(SecretKeyCheck.name == ROW_NAME)
        .first()
    )
    return KeyCheck(row["key_id"], row["check_value"]) if row else None


async def create(box: SecretBox) -> KeyCheck:
    """Record `box`'s key as the database's, unless another starter recorded one first.

    Returns the check that is stored afterwards: the caller compares it with its key (two
    controllers that generated different keys at once: the first one wins, the other is refused).
    """
    await SecretKeyCheck.insert(
        SecretKeyCheck(
            id=uuid.uuid4(),
            name=ROW_NAME,
            key_id=box.key.key_id,
            check_value=box.seal(aad.KEY_CHECK_PLAINTEXT, aad.KEY_CHECK),
            created_at=datetime.now(UTC),
        )
    ).on_conflict(target=SecretKeyCheck.name, action="DO NOTHING")
    stored = await load()
    assert stored is not None
    return stored


async def replace(box: SecretBox) -> None:
    """Make `box`'s key the database's (rotation; inside its transaction)."""
    await SecretKeyCheck.update(
        {
            SecretKeyCheck.key_id: box.key.key_id,
            SecretKeyCheck.check_value: box.seal(aad.KEY_CHECK_PLAINTEXT, aad.KEY_CHECK),
            SecretKeyCheck.rotated_at: datetime.now(UTC),
        }
    ).where(SecretKeyCheck.name == ROW_NAME)
