"""CPU and memory quantities as Kubernetes writes them ("500m", "2", "512Mi", "4Gi", "1G").

Why Kubernetes' notation: the `resources` node of a stage is applied by the Docker executor and,
on a cluster, by the Kubernetes executor as pod requests and limits; one notation that both the
pipeline author and the cluster operator already know, parsed in one place, means a quantity
means the same wherever it runs. Values are kept as integers: CPU in thousandths of a core
(millicores), memory in bytes.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Final

__all__ = ["format_cpu", "format_memory", "parse_cpu", "parse_memory"]

_NUMBER: Final = re.compile(r"(\d+(?:\.\d*)?|\.\d+)([A-Za-z]*)\Z")
_MEMORY_UNITS: Final = {
    "": 1,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "P": 10**15,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
}
_BINARY: Final = (("Pi", 2**50), ("Ti", 2**40), ("Gi", 2**30), ("Mi", 2**20), ("Ki", 2**10))


def _split(value: str | int | float) -> tuple[Decimal, str] | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        text = repr(value) if isinstance(value, float) else str(value)
    else:
        text = value.strip()
    match = _NUMBER.match(text)
    if match is None:
        return None
    try:
        return Decimal(match.group(1)), match.group(2)
    except InvalidOperation:
        return None


def parse_cpu(value: str | int | float) -> int | None:
    """Millicores for "2", "1.5", "500m" (or a number of cores); None when it is not a CPU quantity
    or not a whole number of millicores."""
    parts = _split(value)
    if parts is None:
        return None
    number, unit = parts
    if unit == "m":
        millis = number
    elif unit == "":
        millis = number * 1000
    else:
        return None
    if millis != millis.to_integral_value():
        return None
    return int(millis)


def parse_memory(value: str | int | float) -> int | None:
    """Bytes for "512Mi", "4Gi", "1G", "1000000" ...; None when it is not a memory quantity."""
    parts = _split(value)
    if parts is None:
        return None
    number, unit = parts
    factor = _MEMORY_UNITS.get(unit)
    if factor is None:
        return None
    return int(number * factor)


def format_cpu(millis: int) -> str:
    """Millicores as Kubernetes writes them: whole cores as "2", the rest as "1500m"."""
    return str(millis // 1000) if millis % 1000 == 0 else f"{millis}m"


def format_memory(size: int) -> str:
    """Bytes in the largest binary unit that divides them ("4Gi", "1536Mi"), else plain bytes."""
    for unit, factor in _BINARY:
        if size >= factor and size % factor == 0:
            return f"{size // factor}{unit}"
    return str(size)
