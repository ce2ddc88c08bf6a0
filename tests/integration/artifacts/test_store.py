"""ArtifactStore on the real file system: content addressing, dedupe, limits, checks, concurrency."""

from __future__ import annotations

import asyncio
import hashlib
import os
import stat
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

import pytest

from controller.artifacts.store import (
    ArtifactCorrupt,
    ArtifactMissing,
    ArtifactStore,
    ArtifactTooLarge,
)


async def chunks(parts: Iterable[bytes], delay: float = 0.0) -> AsyncIterator[bytes]:
    for part in parts:
        if delay:
            await asyncio.sleep(delay)
        yield part


def blobs(store: ArtifactStore) -> list[Path]:
    return sorted(p for p in store.root.rglob("*") if p.is_file() and store.tmp not in p.parents)


@pytest.fixture
def store(tmp_path: Path) -> ArtifactStore:
    return ArtifactStore(tmp_path / "artifacts")


async def test_content_is_stored_under_its_sha256(store: ArtifactStore) -> None:
    data = b"hello artifacts\n" * 1000
    sha = hashlib.sha256(data).hexdigest()
    blob = await store.put(chunks([data[:7000], data[7000:]]), expected_size=len(data), expected_sha256=sha)
    assert (blob.sha256, blob.size, blob.deduplicated) == (sha, len(data), False)
    path = store.path(sha)
    assert path == store.root / sha[:2] / sha
    assert path.read_bytes() == data
    assert stat.S_IMODE(path.stat().st_mode) == 0o444  # stored content is never rewritten
    assert list(store.tmp.iterdir()) == []
    assert b"".join([c async for c in store.read(sha, chunk_size=4096)]) == data
    with store.open(sha) as handle:
        assert handle.read(5) == b"hello"


async def test_identical_content_is_stored_once(store: ArtifactStore) -> None:
    first = await store.put(chunks([b"same bytes"]))
    second = await store.put(chunks([b"same ", b"bytes"]))
    assert first.sha256 == second.sha256
    assert (first.deduplicated, second.deduplicated) == (False, True)
    assert len(blobs(store)) == 1
    assert list(store.tmp.iterdir()) == []


async def test_an_empty_file_is_content_too(store: ArtifactStore) -> None:
    blob = await store.put(chunks([]), expected_size=0)
    assert blob.sha256 == hashlib.sha256(b"").hexdigest() and blob.size == 0
    assert store.path(blob.sha256).read_bytes() == b""


async def test_over_the_limit_stops_reading_and_stores_nothing(store: ArtifactStore) -> None:
    read: list[int] = []

    async def endless() -> AsyncIterator[bytes]:
        for index in range(1000):
            read.append(index)
            yield b"x" * 1024

    with pytest.raises(ArtifactTooLarge) as refused:
        await store.put(endless(), limit=10_000)
    assert refused.value.limit == 10_000 and refused.value.received == 10 * 1024
    assert len(read) == 10  # the rest is never read
    assert blobs(store) == [] and list(store.tmp.iterdir()) == []


async def test_a_declared_size_over_the_limit_is_refused_before_reading(store: ArtifactStore) -> None:
    async def never() -> AsyncIterator[bytes]:
        raise AssertionError("must not be read")
        yield b""  # pragma: no cover

    with pytest.raises(ArtifactTooLarge):
        await store.put(never(), limit=100, expected_size=101)
    assert blobs(store) == []


async def test_exactly_the_limit_is_fine(store: ArtifactStore) -> None:
    blob = await store.put(chunks([b"12345"]), limit=5, expected_size=5)
    assert blob.size == 5


@pytest.mark.parametrize(
    ("parts", "size", "message"),
    [
        ([b"abc"], 4, "3 bytes arrived, 4 were announced"),
        ([b"abc", b"de"], 4, "more than the 4 bytes announced arrived"),
    ],
)
async def test_a_size_mismatch_stores_nothing(
    store: ArtifactStore, parts: list[bytes], size: int, message: str
) -> None:
    with pytest.raises(ArtifactCorrupt, match=message):
        await store.put(chunks(parts), expected_size=size)
    assert blobs(store) == [] and list(store.tmp.iterdir()) == []


async def test_a_sha256_mismatch_stores_nothing(store: ArtifactStore) -> None:
    wrong = hashlib.sha256(b"something else").hexdigest()
    with pytest.raises(ArtifactCorrupt, match=f"{wrong} was announced"):
        await store.put(chunks([b"content"]), expected_size=7, expected_sha256=wrong)
    assert blobs(store) == [] and list(store.tmp.iterdir()) == []


async def test_a_broken_upload_stores_nothing(store: ArtifactStore) -> None:
    async def breaks() -> AsyncIterator[bytes]:
        yield b"partial"
        raise ConnectionError("the agent went away")

    with pytest.raises(ConnectionError):
        await store.put(breaks())
    assert blobs(store) == [] and list(store.tmp.iterdir()) == []


async def test_concurrent_identical_uploads_store_one_file(store: ArtifactStore) -> None:
    data = os.urandom(300_000)
    parts = [data[i : i + 10_000] for i in range(0, len(data), 10_000)]
    results = await asyncio.gather(*(store.put(chunks(parts, delay=0.001)) for _ in range(8)))
    assert {r.sha256 for r in results} == {hashlib.sha256(data).hexdigest()}
    assert sorted(r.deduplicated for r in results) == [False] + [True] * 7
    [only] = blobs(store)
    assert only.read_bytes() == data
    assert list(store.tmp.iterdir()) == []


async def test_a_stored_file_survives_a_new_store_instance(store: ArtifactStore) -> None:
    blob = await store.put(chunks([b"durable"]))
    (store.tmp / "crashed-upload.part").write_bytes(b"half")
    again = ArtifactStore(store.root)
    assert list(store.tmp.iterdir()) == []  # what a crash left behind is cleared at start
    assert again.exists(blob.sha256)
    assert (await again.put(chunks([b"durable"]))).deduplicated


@pytest.mark.parametrize("bad", ["", "abc", "../" + "a" * 61, "A" * 64, "g" * 64, "a" * 63 + "/"])
def test_malformed_addresses_name_no_path(store: ArtifactStore, bad: str) -> None:
    with pytest.raises(ArtifactMissing):
        store.path(bad)
    assert not store.exists(bad)


def test_missing_content_is_a_clear_error(store: ArtifactStore) -> None:
    with pytest.raises(ArtifactMissing, match="is missing from"):
        store.open("b" * 64)


async def test_discard_deletes_content_unless_it_was_stored_or_deduplicated_within_the_grace(
    store: ArtifactStore,
) -> None:
    blob = await store.put(chunks([b"old build output"]))
    path = store.path(blob.sha256)
    assert not store.discard(blob.sha256, grace_s=60)  # just stored: an upload may be pointing at it
    os.utime(path, (path.stat().st_atime, path.stat().st_mtime - 120))
    again = await store.put(chunks([b"old build output"]))  # deduplicated: marks it as just used
    assert again.deduplicated and not store.discard(blob.sha256, grace_s=60)
    os.utime(path, (path.stat().st_atime, path.stat().st_mtime - 120))
    assert store.discard(blob.sha256, grace_s=60)
    assert not store.exists(blob.sha256) and blobs(store) == []
    assert not store.discard(blob.sha256, grace_s=0)  # already gone
    assert not store.discard("../../etc/passwd", grace_s=0)  # never a path outside the store
