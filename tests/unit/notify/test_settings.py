"""controller.notify.services: the checks of a notification's settings (no database needed)."""

from __future__ import annotations

import pytest

from controller.errors import Invalid
from controller.notify.services import check_events, check_url, url_hint


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("", "must be the http:// or https:// URL"),
        ("ftp://host/x", "must start with https://"),
        ("https:///path", "has no host"),
        ("https://host:99999/x", "not a valid URL"),
        ("https://a b/x", "without spaces"),
        ("https://u:p@host/x", "must not hold credentials"),
    ],
)
def test_bad_urls_are_refused_saying_why(url: str, words: str) -> None:
    with pytest.raises(Invalid, match=words):
        check_url(url)


def test_listings_show_scheme_and_host_only() -> None:
    assert url_hint("https://Hooks.Slack.com/services/T/B/XYZ") == "https://hooks.slack.com/…"
    assert url_hint("http://127.0.0.1:8000") == "http://127.0.0.1:8000/"
    assert url_hint("https://h.example/?token=x") == "https://h.example/…"


def test_events_default_to_all_and_keep_their_order() -> None:
    assert check_events(None) == ("fixed", "failed", "finished")
    assert check_events(["finished", "fixed"]) == ("fixed", "finished")
    for bad in ([], ["done"], "failed"):
        with pytest.raises(Invalid):
            check_events(bad)
