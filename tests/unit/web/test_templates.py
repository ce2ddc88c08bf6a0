"""The UI's templates render with autoescaping: untrusted text (commit messages, branches) stays text."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from controller.runs.listing import RunPage
from controller.runs.timing import run_timing
from controller.web.paths import web_dir
from controller.web.templating import environment

EVIL = '<script>alert("x")</script>'


def run(**overrides: object) -> dict[str, object]:
    base: dict[str, object] = {
        "id": "r1",
        "pipeline_id": "p1",
        "pipeline_name": "app",
        "number": 7,
        "status": "timed_out",
        "branch": "main",
        "sha": "0123456789abcdef0123456789abcdef01234567",
        "commit_message": "subject\n\nbody",
        "author": "Ada",
        "trigger": "push",
        "created_at": "2026-11-27T10:00:00+00:00",
        "started_at": "2026-11-27T10:00:01+00:00",
        "finished_at": "2026-11-27T10:02:06+00:00",
        "failed_stages": [],
    }
    base.update(overrides)
    stages = [
        {
            "queued_at": base["created_at"],
            "started_at": base["started_at"],
            "finished_at": base["finished_at"],
        }
    ]
    base.setdefault("timing", run_timing(stages, now=datetime(2026, 11, 27, 11, tzinfo=UTC)))
    return base


def runs_page(runs: list[dict[str, object]], total: int) -> RunPage:
    """A page of `runs` (made by `run`), their timings beside them as recent_runs gives them."""
    timings: dict[str, Any] = {str(r["id"]): r.pop("timing") for r in runs}
    return RunPage(runs, 1, 25, total, timings)


def render_runs(page: RunPage, **context: object) -> str:
    template = environment(web_dir() / "templates").get_template("_runs.html")
    defaults: dict[str, object] = {
        "page": page,
        "links": {"prev": None, "next": "/?page=2"},
        "filtered": False,
        "show_pipeline": True,
        "empty_hint": "dashboard",
    }
    return template.render({**defaults, **context})


def test_untrusted_text_is_escaped() -> None:
    html = render_runs(runs_page([run(commit_message=EVIL, branch=EVIL, author=EVIL)], 1))
    assert EVIL not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html


def test_a_run_row_shows_status_as_icon_and_word_and_formats_values() -> None:
    html = render_runs(runs_page([run()], 30))
    assert 'data-status="timed_out"' in html and "⏱</span> timed out" in html
    assert ">01234567<" in html  # short sha
    assert ">subject<" in html  # the subject line only
    assert ">2m 05s<" in html  # finished: a fixed duration
    assert 'href="/?page=2"' in html and "Page 1 of 2" in html
    # Started: how long ago, the exact time (with its zone) on hover.
    assert 'datetime="2026-11-27T10:00:01+00:00" title="2026-11-27 10:00:01 UTC"' in html


def test_a_failed_run_names_its_failed_stage_and_a_long_subject_keeps_its_title() -> None:
    subject = "a commit subject far longer than any column " * 5
    html = render_runs(
        runs_page([run(status="failed", failed_stages=["test", "lint"], commit_message=subject)], 1)
    )
    assert 'href="/pipelines/p1/runs/7/stages/test"' in html and "✗ test +1" in html
    assert f'title="{subject.strip()}"' in html  # the cell cuts it; its title keeps it whole


def test_a_retried_run_shows_the_time_it_ran_and_its_queued_time_apart() -> None:
    stages = [
        {
            "queued_at": "2026-11-27T10:00:00+00:00",
            "started_at": "2026-11-27T10:00:00+00:00",
            "finished_at": "2026-11-27T10:00:10+00:00",
        },
        # retried an hour later: waited 3 s for an agent, ran 5 s
        {
            "queued_at": "2026-11-27T11:00:00+00:00",
            "started_at": "2026-11-27T11:00:03+00:00",
            "finished_at": "2026-11-27T11:00:08+00:00",
        },
    ]
    timing = run_timing(stages, now=datetime(2026, 11, 27, 12, tzinfo=UTC))
    html = render_runs(runs_page([run(timing=timing, finished_at="2026-11-27T11:00:08+00:00")], 1))
    assert '<span class="duration">15s</span>' in html
    assert "queued 3s" in html


def test_empty_states() -> None:
    nothing = RunPage([], 1, 25, 0)
    assert "buildit repo add PATH" in render_runs(nothing)
    assert 'data-empty="filtered"' in render_runs(nothing, filtered=True)
    assert 'data-empty="pipeline"' in render_runs(nothing, empty_hint="pipeline")
