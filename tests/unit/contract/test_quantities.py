"""CPU and memory quantities: Kubernetes' notation in, integers out, and back."""

from __future__ import annotations

import pytest

from agent.contract.quantities import format_cpu, format_memory, parse_cpu, parse_memory


@pytest.mark.parametrize(
    ("text", "millis"),
    [("2", 2000), ("1.5", 1500), ("500m", 500), ("0.25", 250), (2, 2000), (0.5, 500), (" 3 ", 3000)],
)
def test_cpu_in_cores_or_millicores(text: str | int | float, millis: int) -> None:
    assert parse_cpu(text) == millis


@pytest.mark.parametrize("text", ["", "2x", "1.5m", "0.0001", "-1", "2Gi", "m", True, "1e3"])
def test_what_is_not_a_cpu_quantity(text: str | bool) -> None:
    assert parse_cpu(text) is None


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("512Mi", 512 * 2**20),
        ("4Gi", 4 * 2**30),
        ("1.5Gi", 3 * 2**29),
        ("1G", 10**9),
        ("500M", 500 * 10**6),
        ("64k", 64_000),
        ("1000000", 1_000_000),
        (1024, 1024),
    ],
)
def test_memory_in_binary_or_decimal_units(text: str | int, size: int) -> None:
    assert parse_memory(text) == size


@pytest.mark.parametrize("text", ["", "4GB", "4gi", "Gi", "-1Gi", "1.2.3", False])
def test_what_is_not_a_memory_quantity(text: str | bool) -> None:
    assert parse_memory(text) is None


def test_formatting_writes_what_parsing_reads() -> None:
    assert [format_cpu(m) for m in (2000, 1500, 10)] == ["2", "1500m", "10m"]
    assert [format_memory(b) for b in (4 * 2**30, 1536 * 2**20, 1000, 2**10)] == [
        "4Gi",
        "1536Mi",
        "1000",
        "1Ki",
    ]
    for millis in (10, 999, 1000, 123_000):
        assert parse_cpu(format_cpu(millis)) == millis
    for size in (6 * 2**20, 10**9, 3 * 2**29, 7):
        assert parse_memory(format_memory(size)) == size
