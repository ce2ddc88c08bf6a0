"""Secrets: encrypted per-tenant values for pipelines, and everything else sealed under the master key.

- `keys.py`: the master key (from `BUILDIT_SECRET_KEY` or `<data dir>/master.key`), stdlib only.
- `crypto.py`: AES-256-GCM, the only importer of `cryptography`; `aad.py`: what each ciphertext is
  bound to, so no ciphertext can be moved to another row or column.
- `tables.py`: the `Secret` rows and the key check; `services.py`: setting, listing, deleting and
  resolving secrets (values are write-only); `api.py`: the REST adapter.
- `unlock.py`: at controller start, the key is loaded and checked against the database (a wrong or
  missing key stops the start with a clear message); `atrest.py`: every sealed column, the
  upgrade of plain-text ones and re-encryption; `rotation.py`: `buildit admin rotate-key`.
"""
