"""A value wrapped in `Sensitive` never shows itself by accident."""

from __future__ import annotations

import pickle

import pytest

from controller.secrets.sensitive import Sensitive


def test_a_sensitive_value_prints_as_stars_everywhere_but_reveal() -> None:
    value = Sensitive("hunter2")
    for shown in (repr(value), str(value), f"{value}", f"{value!r}", "%s" % value, repr([value])):  # noqa: UP031
        assert "hunter2" not in shown
    assert value.reveal() == "hunter2" and len(value) == 7
    assert value == Sensitive("hunter2") and value != Sensitive("other")
    with pytest.raises(TypeError):
        pickle.dumps(value)
