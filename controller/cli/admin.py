"""`buildit admin ...`: offline maintenance of a controller's data, with the controller stopped.

Each verb works on the data directory and the database directly (no REST API), inside `offline()`:
the data directory's lock taken exclusively (refused while a controller runs on it), the database
opened, and on PostgreSQL a refusal while any controller session is connected (a controller on
another machine). Where it cannot tell (a SQLite file outside the data directory), it says so.

Adding a verb: write `_add_<verb>(verbs)` that adds its parser (with `storage_flags`) and a
`cmd_<verb>(args)`, and list the adder in `VERBS`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from controller.cli.errors import CliError, UsageError

if TYPE_CHECKING:
    from controller.settings import StorageSettings

_T = TypeVar("_T")


def storage_flags(parser: argparse.ArgumentParser) -> None:
    """`--data-dir` and `--database-url`, as `buildit controller` takes them."""
    parser.add_argument(
        "--data-dir", help="the controller's state directory (env BUILDIT_DATA_DIR, default ./.buildit)"
    )
    parser.add_argument(
        "--database-url",
        help="sqlite:///PATH or postgresql://USER:PASS@HOST:PORT/DB "
        "(env BUILDIT_DATABASE_URL, default SQLite under the data dir)",
    )


def _storage(args: argparse.Namespace) -> StorageSettings:
    from controller.settings import StorageSettings

    try:
        storage = StorageSettings.from_env(args.data_dir, args.database_url)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    if not storage.data_dir.is_dir():
        raise UsageError(f"no data directory at {storage.data_dir}: pass --data-dir (or BUILDIT_DATA_DIR)")
    return storage


@contextlib.asynccontextmanager
async def offline(storage: StorageSettings) -> AsyncIterator[None]:
    """The database open for maintenance, with no controller running on it (see the module docstring)."""
    from controller import datadir
    from controller.db import (
        ADMIN_APPLICATION,
        close_database,
        controller_sessions,
        open_database,
        sqlite_file,
    )

    try:
        lock = datadir.maintenance_lock(storage.data_dir)
    except datadir.DataDirBusy as exc:
        raise CliError(f"{exc}: stop the controller first (this command works offline)") from None
    try:
        engine = await open_database(storage.database_url, ADMIN_APPLICATION)
        try:
            sessions = await controller_sessions(engine)
            if sessions:
                raise CliError(
                    f"{sessions} controller connection(s) to this database are open: stop every controller "
                    "using it (on any machine) first; this command works offline"
                )
            database = sqlite_file(engine)
            if database is not None and storage.data_dir not in database.resolve().parents:
                print(
                    f"buildit: note: cannot tell whether a controller with another data directory uses "
                    f"{database}; make sure none does",
                    file=sys.stderr,
                )
            yield
        finally:
            await close_database(engine)
    finally:
        lock.release()


def _run(work: Callable[[], Awaitable[_T]]) -> _T:
    """Run a verb's coroutine; the refusals it can meet become one-line errors (exit 1)."""
    from controller.db import DatabaseUnavailable
    from controller.secrets.atrest import ResealFailed
    from controller.secrets.keys import MasterKeyError

    async def main() -> _T:
        return await work()

    try:
        return asyncio.run(main())
    except (MasterKeyError, ResealFailed, DatabaseUnavailable) as exc:
        raise CliError(str(exc)) from None


# --------------------------------------------------------------------------------------- rotate-key


def cmd_rotate_key(args: argparse.Namespace) -> int:
    """Re-encrypt every secret, webhook secret and status token under a new master key."""
    from controller.secrets import keys
    from controller.secrets.keys import MasterKeyError
    from controller.secrets.rotation import rotate

    storage = _storage(args)
    new_key = None
    if args.new_key_file:
        path = Path(args.new_key_file)
        try:
            new_key = keys.read_file(path)
        except MasterKeyError as exc:
            raise UsageError(f"--new-key-file: {exc}") from None
        if new_key is None:
            raise UsageError(f"--new-key-file {path}: no such file")

    async def work() -> Any:
        async with offline(storage):
            return await rotate(storage.data_dir, storage.secret_key, new_key)

    done = _run(work)
    if done.resumed:
        print(f"finished an interrupted rotation: the database is under key {done.new_key_id}")
    else:
        print(
            f"rotated the master key {done.old_key_id} -> {done.new_key_id}: "
            f"{done.resealed} value(s) re-encrypted; the old key no longer opens this database"
        )
    if done.from_env:
        print(
            f"  the key comes from BUILDIT_SECRET_KEY: set it to the contents of {done.key_path} "
            "wherever the controller runs (every replica), then delete that file"
        )
    else:
        print(f"  new key: {done.key_path} (mode 0600): back it up now, in place of the old one")
    return 0


def _add_rotate_key(verbs: Any) -> None:
    rotate = verbs.add_parser(
        "rotate-key",
        help="re-encrypt all secrets, webhook secrets and status tokens under a new master key (offline)",
    )
    storage_flags(rotate)
    rotate.add_argument(
        "--new-key-file",
        metavar="PATH",
        help="the new key (base64 of 32 bytes, as in master.key) instead of a generated one",
    )
    rotate.set_defaults(func=cmd_rotate_key)


# ----------------------------------------------------------------------------------- reset-password


def cmd_reset_password(args: argparse.Namespace) -> int:
    """Give a user a new password (a lost admin password): generated and printed, or from stdin."""
    from controller.auth.commands import reset_password
    from controller.errors import BuildItError

    storage = _storage(args)
    given = sys.stdin.readline().rstrip("\n") if args.password_stdin else None

    async def work() -> str:
        async with offline(storage):
            try:
                return await reset_password(args.user, given)
            except BuildItError as exc:
                raise CliError(exc.message) from None

    password = _run(work)
    if given is None:
        print(f"new password of {args.user}: {password}")
    else:
        print(f"password of {args.user} changed")
    print("  the user's sessions ended; API keys keep working (revoke them with `buildit apikey revoke`)")
    return 0


def _add_reset_password(verbs: Any) -> None:
    reset = verbs.add_parser("reset-password", help="set a new password for a user (offline)")
    reset.add_argument("user", metavar="USER", help="the user name, e.g. admin")
    reset.add_argument("--password-stdin", action="store_true", help="read the new password from stdin")
    storage_flags(reset)
    reset.set_defaults(func=cmd_reset_password)


#: Each adds one `admin` verb's parser.
VERBS: list[Callable[[Any], None]] = [_add_rotate_key, _add_reset_password]


def add_parsers(sub: Any) -> None:
    """The `admin` verb group."""
    admin = sub.add_parser(
        "admin", help="offline maintenance of a controller's data (stop the controller first)"
    )
    verbs = admin.add_subparsers(dest="admin_command", required=True, metavar="ACTION")
    for add in VERBS:
        add(verbs)
