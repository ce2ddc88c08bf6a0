"""LogShipper: chunk cutting, per-lease numbering, acknowledgement, resending and the memory bound."""

from __future__ import annotations

import asyncio

from agent.contract import logmarks
from agent.contract.types import LogAck, LogChunk
from agent.logs import LogShipper


async def drain_outbox(shipper: LogShipper) -> list[LogChunk]:
    """Every chunk ready to send right now."""
    chunks: list[LogChunk] = []
    while True:
        try:
            chunks.append(await asyncio.wait_for(shipper.next_chunk(), 0.01))
        except TimeoutError:
            return chunks


def texts(chunks: list[LogChunk]) -> list[str]:
    """The output lines, unpacked (a LogLine holds consecutive lines joined by \\n)."""
    return [text for chunk in chunks for line in chunk.lines for text in line.text.split("\n")]


def line_counts(chunks: list[LogChunk]) -> list[int]:
    return [len(texts([c])) for c in chunks]


async def test_a_chunk_is_cut_after_the_flush_interval() -> None:
    shipper = LogShipper(flush_interval_s=0.05)
    shipper.open("a")
    shipper.add("a", "one")
    shipper.add("a", "two")
    assert await drain_outbox(shipper) == []  # not yet: 50 ms have not passed
    chunk = await asyncio.wait_for(shipper.next_chunk(), 1)
    assert (chunk.lease_id, chunk.seq, [line.text for line in chunk.lines]) == ("a", 1, ["one\ntwo"])


async def test_the_lines_of_a_chunk_are_packed_into_one_log_line() -> None:
    # The controller stores text + "\n" per LogLine: packing must give the same bytes as one LogLine
    # per line, empty lines included.
    shipper = LogShipper(flush_interval_s=60)
    shipper.open("a")
    for text in ["$ make", "cc -c a.c", "", "warning: x", "done", "ok"]:
        shipper.add("a", text)
    shipper.flush("a")
    (chunk,) = await drain_outbox(shipper)
    assert [line.text for line in chunk.lines] == ["$ make\ncc -c a.c\n\nwarning: x\ndone\nok"]
    stored = "".join(line.text + "\n" for line in chunk.lines)
    assert stored == "$ make\ncc -c a.c\n\nwarning: x\ndone\nok\n"


async def test_a_chunk_is_cut_at_the_line_limit() -> None:
    shipper = LogShipper(flush_interval_s=60, max_chunk_lines=1000)
    shipper.open("a")
    for i in range(2500):
        shipper.add("a", f"l{i}")
    chunks = await drain_outbox(shipper)
    assert line_counts(chunks) == [1000, 1000]
    shipper.flush("a")
    chunks += await drain_outbox(shipper)
    assert [c.seq for c in chunks] == [1, 2, 3]
    assert texts(chunks) == [f"l{i}" for i in range(2500)]


async def test_a_chunk_is_cut_before_it_exceeds_the_byte_limit() -> None:
    shipper = LogShipper(flush_interval_s=60, max_chunk_bytes=256 * 1024)
    shipper.open("a")
    line = "x" * 60_000
    for _ in range(10):
        shipper.add("a", line)
    shipper.flush("a")
    chunks = await drain_outbox(shipper)
    assert line_counts(chunks) == [4, 4, 2]
    assert all(sum(len(x.text) + 1 for x in c.lines) <= 256 * 1024 for c in chunks)


async def test_multibyte_text_counts_in_utf8_bytes() -> None:
    shipper = LogShipper(flush_interval_s=60, max_chunk_bytes=1000)
    shipper.open("a")
    shipper.add("a", "é" * 300)  # 600 bytes
    shipper.add("a", "é" * 300)  # would make 1200 > 1000: cut first
    chunks = await drain_outbox(shipper)
    assert line_counts(chunks) == [1]


async def test_seqs_are_per_lease_and_interleaving_keeps_order() -> None:
    shipper = LogShipper(flush_interval_s=60, max_chunk_lines=2)
    shipper.open("a")
    shipper.open("b")
    for i in range(4):
        shipper.add("a", f"a{i}")
        shipper.add("b", f"b{i}")
    chunks = await drain_outbox(shipper)
    assert [(c.lease_id, c.seq) for c in chunks] == [("a", 1), ("b", 1), ("a", 2), ("b", 2)]
    assert texts([c for c in chunks if c.lease_id == "a"]) == ["a0", "a1", "a2", "a3"]


async def test_lines_of_unknown_or_discarded_leases_are_ignored() -> None:
    shipper = LogShipper(flush_interval_s=60, max_chunk_lines=1)
    shipper.add("nope", "x")
    shipper.open("a")
    shipper.discard("a")
    shipper.add("a", "y")
    assert await drain_outbox(shipper) == []


async def test_acks_release_chunks_and_wait_acked_returns() -> None:
    shipper = LogShipper(flush_interval_s=60, max_chunk_lines=1)
    shipper.open("a")
    for i in range(3):
        shipper.add("a", f"l{i}")
    chunks = await drain_outbox(shipper)
    assert shipper.unacked("a") == 3
    waiter = asyncio.create_task(shipper.wait_acked("a", 5))
    await asyncio.sleep(0.01)
    assert shipper.acknowledge(LogAck("a", 1))
    assert shipper.unacked("a") == 2 and not waiter.done()
    assert shipper.acknowledge(LogAck("a", 3))  # cumulative: acks for 2 and 3 at once
    assert await waiter is True
    assert shipper.unacked("a") == 0 and shipper.buffered_bytes("a") == 0
    assert len(chunks) == 3


async def test_wait_acked_flushes_pending_lines_first() -> None:
    shipper = LogShipper(flush_interval_s=60)
    shipper.open("a")
    shipper.add("a", "pending")
    waiter = asyncio.create_task(shipper.wait_acked("a", 5))
    chunk = await asyncio.wait_for(shipper.next_chunk(), 1)
    assert [line.text for line in chunk.lines] == ["pending"]
    shipper.acknowledge(LogAck("a", chunk.seq))
    assert await waiter is True


async def test_wait_acked_times_out_and_fails_for_a_lost_lease() -> None:
    shipper = LogShipper(flush_interval_s=60)
    shipper.open("a")
    shipper.add("a", "x")
    assert await shipper.wait_acked("a", 0.05) is False
    waiter = asyncio.create_task(shipper.wait_acked("a", 5))
    await asyncio.sleep(0.01)
    shipper.discard("a")
    assert await waiter is False
    assert await shipper.wait_acked("unknown", 1) is False


async def test_wait_acked_with_nothing_logged_is_immediate() -> None:
    shipper = LogShipper()
    shipper.open("a")
    assert await shipper.wait_acked("a", 0.01) is True


async def test_rewind_resends_every_unacked_chunk_in_order() -> None:
    shipper = LogShipper(flush_interval_s=60, max_chunk_lines=1)
    shipper.open("a")
    shipper.open("b")
    for i in range(3):
        shipper.add("a", f"a{i}")
    shipper.add("b", "b0")
    first = await drain_outbox(shipper)
    assert len(first) == 4
    shipper.acknowledge(LogAck("a", 1))
    # The stream broke: everything not acknowledged goes out again, each lease in order.
    shipper.rewind()
    again = await drain_outbox(shipper)
    assert [(c.lease_id, c.seq) for c in again] == [("a", 2), ("a", 3), ("b", 1)]
    assert again[0] is first[1]  # the same chunk object: identical content on resend


async def test_chunks_acked_before_they_are_written_are_skipped() -> None:
    shipper = LogShipper(flush_interval_s=60, max_chunk_lines=1)
    shipper.open("a")
    shipper.add("a", "x")
    shipper.add("a", "y")
    shipper.rewind()  # queues 1, 2 a second time (as after a reconnect)
    shipper.acknowledge(LogAck("a", 2))
    assert await drain_outbox(shipper) == []


async def test_an_ack_below_the_chunk_it_answers_reveals_a_gap() -> None:
    shipper = LogShipper(flush_interval_s=60, max_chunk_lines=1)
    shipper.open("a")
    for i in range(3):
        shipper.add("a", f"l{i}")
    await drain_outbox(shipper)
    assert shipper.acknowledge(LogAck("a", 1)) is True  # answers seq 1
    assert shipper.acknowledge(LogAck("a", 1)) is False  # answers seq 2 but stored only 1: a gap
    shipper.rewind()
    assert [c.seq for c in await drain_outbox(shipper)] == [2, 3]


async def test_an_ack_beyond_what_was_sent_is_clamped() -> None:
    shipper = LogShipper(flush_interval_s=60, max_chunk_lines=1)
    shipper.open("a")
    shipper.add("a", "x")
    await drain_outbox(shipper)
    assert shipper.acknowledge(LogAck("a", 99))
    shipper.add("a", "y")
    [chunk] = await drain_outbox(shipper)
    assert chunk.seq == 2


async def test_lease_lost_ack_discards_and_reports() -> None:
    lost: list[str] = []
    shipper = LogShipper(flush_interval_s=60, max_chunk_lines=1, on_lease_lost=lost.append)
    shipper.open("a")
    shipper.add("a", "x")
    shipper.add("a", "y")
    await asyncio.wait_for(shipper.next_chunk(), 1)
    assert shipper.acknowledge(LogAck("a", 0, lease_lost=True))
    assert lost == ["a"]
    assert shipper.unacked("a") == 0
    assert await drain_outbox(shipper) == []  # chunk 2 is dropped, not sent
    assert shipper.acknowledge(LogAck("a", 0, lease_lost=True))  # a late second answer: ignored
    assert lost == ["a"]


async def test_memory_is_bounded_and_dropped_output_is_reported() -> None:
    shipper = LogShipper(flush_interval_s=60, max_chunk_lines=1, max_unacked_bytes=20_000)
    shipper.open("a")
    for i in range(500):
        shipper.add("a", f"line {i:04d} " + "x" * 90)
    assert shipper.buffered_bytes("a") <= 20_000
    dropped = shipper.dropped_lines("a")
    assert dropped > 0
    chunks = await drain_outbox(shipper)
    kept = texts(chunks)
    assert kept == [f"line {i:04d} " + "x" * 90 for i in range(len(kept))]  # a prefix, in order
    shipper.acknowledge(LogAck("a", chunks[-1].seq))  # the controller caught up
    shipper.add("a", "after")
    shipper.flush("a")
    notice, after = texts(await drain_outbox(shipper))
    assert notice.startswith(logmarks.line(logmarks.NOTE, text=f"buildit: {dropped} line(s) ("))
    assert after == "after"
    assert shipper.dropped_lines("a") == 0


async def test_dropped_output_is_reported_when_the_stage_ends() -> None:
    shipper = LogShipper(flush_interval_s=60, max_unacked_bytes=1000)
    shipper.open("a")
    for _ in range(20):
        shipper.add("a", "y" * 100)
    shipper.flush("a")
    last = texts(await drain_outbox(shipper))[-1]
    assert "dropped" in last


async def test_a_lease_opened_with_a_masker_ships_masked_chunks() -> None:
    from agent.masking import Masker

    shipper = LogShipper(flush_interval_s=60)
    shipper.open("a", Masker(["s3cr3t-value"]))
    for text in ["token s3cr3t-value", "clean", "czNjcjN0LXZhbHVl"]:  # the last is its base64
        shipper.add("a", text)
    shipper.flush("a")
    assert texts(await drain_outbox(shipper)) == ["token ***", "clean", "***"]


async def test_unsent_chunks_are_kept_and_restored_with_their_sequence_numbers() -> None:
    shipper = LogShipper(flush_interval_s=10)
    shipper.open("a")
    shipper.add("a", "one")
    shipper.flush("a")
    assert [c.seq for c in await drain_outbox(shipper)] == [1]
    assert shipper.acknowledge(LogAck("a", 1))
    shipper.add("a", "two")
    shipper.flush("a")
    shipper.add("a", "three")  # queued, not cut yet: unsent() cuts it
    kept = shipper.unsent("a")
    assert [(c.seq, texts([c])) for c in kept] == [(2, ["two"]), (3, ["three"])]
    assert shipper.unsent("unknown") == ()

    # Another process of the agent: the kept chunks go out again, numbered as before.
    later = LogShipper()
    later.restore("a", kept)
    assert await drain_outbox(later) == list(kept)
    assert later.unacked("a") == 2
    assert later.acknowledge(LogAck("a", 3))
    assert await later.wait_acked("a", 0.1)
    later.restore("b", ())
    assert await later.wait_acked("b", 0.1)
