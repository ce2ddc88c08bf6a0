"""Every value stored sealed under the master key, in one list, and the passes that walk it.

- `SEALED`: the sealed columns, each with the associated data its values are bound to. Adding a
  sealed column here is what makes rotation re-encrypt it.
- `seal_field` / `open_field`: how the repositories and notifications services write and read
  their sealed columns.
- `seal_plaintext`: the upgrade. Webhook secrets and commit-status tokens were stored in plain
  text before they were sealed; each start seals any plain value left, in one transaction (an
  interrupted pass changes nothing; a repeated one finds nothing to do: idempotent).
- `reseal`: rotation's pass, opening every value with the old key and sealing it with the new one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from controller.db import write_transaction
from controller.notify.tables import Notification
from controller.repos.tables import Repository
from controller.secrets import aad
from controller.secrets.crypto import SecretBox, Undecryptable, is_sealed
from controller.secrets.tables import Secret

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SealedColumn:
    """A column whose values are sealed, and what each value is bound to."""

    #: The Piccolo table and column (typed loosely: only storage modules import Piccolo).
    table: Any
    column: Any
    #: Further columns of the row that the associated data names (the id is always read).
    context: tuple[Any, ...]
    bind: Callable[[Mapping[str, Any]], bytes]
    #: What a value is, for messages ("the webhook secret of repository <id>").
    what: str
    #: True for columns that held plain text before they were sealed (the upgrade seals those).
    legacy_plaintext: bool = False


def _repository(column: str) -> Callable[[Mapping[str, Any]], bytes]:
    return lambda row: aad.column("repository", row["id"], column)


def _notification(column: str) -> Callable[[Mapping[str, Any]], bytes]:
    return lambda row: aad.column("notification", row["id"], column)


SEALED: tuple[SealedColumn, ...] = (
    SealedColumn(
        Secret,
        Secret.ciphertext,
        (Secret.tenant, Secret.name, Secret.scope),
        lambda row: aad.secret(row["id"], row["tenant"], row["name"], row["scope"]),
        "the secret",
    ),
    SealedColumn(
        Repository,
        Repository.webhook_secret,
        (),
        _repository("webhook_secret"),
        "the webhook secret of repository",
        legacy_plaintext=True,
    ),
    SealedColumn(
        Repository,
        Repository.status_token,
        (),
        _repository("status_token"),
        "the commit-status token of repository",
        legacy_plaintext=True,
    ),
    SealedColumn(Notification, Notification.url, (), _notification("url"), "the URL of notification"),
    SealedColumn(
        Notification, Notification.secret, (), _notification("secret"), "the signing secret of notification"
    ),
)


def seal_field(box: SecretBox, table: str, row_id: UUID, column: str, plaintext: str) -> str:
    """A value for a sealed column of `table` (an empty value stays empty: nothing to hide)."""
    return box.seal(plaintext, aad.column(table, row_id, column)) if plaintext else ""


def open_field(box: SecretBox, table: str, row_id: UUID, column: str, stored: str) -> str:
    """The plaintext of a sealed column's value; Undecryptable when it does not open.

    A plain value (written before sealing existed; the next start seals it) is returned as it is.
    """
    if not stored or not is_sealed(stored):
        return stored
    return box.open(stored, aad.column(table, row_id, column))


async def _rows(spec: SealedColumn) -> list[dict[str, Any]]:
    id_column = spec.table._meta.primary_key
    rows: list[dict[str, Any]] = await spec.table.select(id_column, spec.column, *spec.context)
    return rows


def _value(spec: SealedColumn, row: Mapping[str, Any]) -> str:
    return str(row[spec.column._meta.name] or "")


async def _store(spec: SealedColumn, row: Mapping[str, Any], value: str) -> None:
    id_column = spec.table._meta.primary_key
    await spec.table.update({spec.column: value}).where(id_column == row["id"])


async def seal_plaintext(box: SecretBox) -> int:
    """Seal every plain value left in the legacy columns (one transaction); how many were sealed."""
    sealed = 0
    async with write_transaction():
        for spec in SEALED:
            if not spec.legacy_plaintext:
                continue
            for row in await _rows(spec):
                value = _value(spec, row)
                if value and not is_sealed(value):
                    await _store(spec, row, box.seal(value, spec.bind(row)))
                    sealed += 1
    if sealed:
        log.info("sealed %d plain-text value(s) under the master key", sealed)
    return sealed


async def any_sealed() -> bool:
    """Whether the database holds any value sealed under some master key."""
    for spec in SEALED:
        for row in await _rows(spec):
            if is_sealed(_value(spec, row)):
                return True
    return False


class ResealFailed(Exception):
    """A sealed value does not open with the current key; the message names which one."""


async def reseal(old: SecretBox, new: SecretBox) -> int:
    """Open every sealed value with `old` and seal it with `new` (plain legacy values are sealed too).

    Runs inside the caller's transaction (rotation commits it with the new key check). Raises
    ResealFailed, naming the row, when a value does not open: the caller rolls everything back.
    """
    count = 0
    for spec in SEALED:
        for row in await _rows(spec):
            value = _value(spec, row)
            if not value:
                continue
            if is_sealed(value):
                try:
                    plain = old.open(value, spec.bind(row))
                except Undecryptable:
                    name = f" '{row['name']}'" if "name" in row and spec.table is Secret else ""
                    raise ResealFailed(
                        f"{spec.what}{name} ({row['id']}) does not decrypt with the current master key: "
                        "set it again (or delete it) with the controller running, then rotate"
                    ) from None
            elif spec.legacy_plaintext:
                plain = value
            else:
                raise ResealFailed(
                    f"{spec.what} ({row['id']}) is not a sealed value: delete it and set it again"
                )
            await _store(spec, row, new.seal(plain, spec.bind(row)))
            count += 1
    return count
