"""What each sealed value is bound to (AES-GCM associated data).

A ciphertext opens only with the associated data it was sealed with, so binding it to the row's
identity and meaning makes swapping ciphertexts between rows, columns, tenants or secret names fail
loudly (Undecryptable) instead of handing one secret out under another's name.
"""

from __future__ import annotations

from uuid import UUID

#: What the key check row seals (a known constant) and binds it to.
KEY_CHECK_PLAINTEXT = "buildit master key check v1"
KEY_CHECK = b"buildit/key-check/v1"


def secret(row_id: UUID, tenant: UUID, name: str, scope: str) -> bytes:
    """A secret's value: its row, tenant, name and scope (`""`, `repository:<id>`, `pipeline:<id>`)."""
    return f"buildit/secret/v1\0{row_id}\0{tenant}\0{name}\0{scope}".encode()


def column(table: str, row_id: UUID, name: str) -> bytes:
    """A sealed column of some other table (a repository's webhook secret or status token)."""
    return f"buildit/column/v1\0{table}\0{name}\0{row_id}".encode()
