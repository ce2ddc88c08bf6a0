"""Reading column values the same way on every engine."""

from __future__ import annotations

import json
from typing import Any


def loaded(value: Any) -> Any:
    """A JSON column's value as Python data: Piccolo returns JSON columns as text unless asked not to."""
    return json.loads(value) if isinstance(value, str) else value
