"""agent.artifacts against the fake controller: uploads after success, downloads before the commands."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.contract._gen import buildit_pb2 as pb
from agent.contract.types import StageStatus, WorkspaceSource
from tests.integration.agent.fake_controller import FakeController
from tests.integration.agent.git_server import GitHttpServer, Upstream
from tests.integration.agent.harness import running_agent, serving, spec

pytestmark = pytest.mark.timeout(60)


# --- artifacts ---------------------------------------------------------------------------------------


async def test_artifacts_are_uploaded_before_the_stage_reports_success(
    fake: FakeController, tmp_path: Path
) -> None:
    async with running_agent(fake, tmp_path) as (_agent, _task):
        await serving(fake)
        lease = fake.push_lease(
            spec(
                "mkdir -p dist/sub && echo hi > dist/a.txt && head -c 600000 /dev/zero > dist/sub/big.bin",
                artifacts=("dist/*.txt", "dist/sub", "missing/*.log"),
            )
        )
        await fake.wait_for(lambda: fake.final_update(lease), timeout=20)
    final = fake.final_update(lease)
    assert final is not None and final.status is StageStatus.SUCCEEDED, final
    assert fake.uploaded[lease] == {"dist/a.txt": b"hi\n", "dist/sub/big.bin": bytes(600000)}
    lines = fake.lines(lease)
    assert "warning: artifact pattern 'missing/*.log' matched no files" in lines
    assert "uploaded artifact dist/a.txt (3 bytes)" in lines
    assert lines[-1] == "uploaded 2 artifact file(s), 600003 bytes"
    events = [(kind, value) for kind, lease_id, value in fake.timeline if lease_id == lease and kind != "ack"]
    finished = events.index(("update", StageStatus.SUCCEEDED))
    assert {("artifact", "dist/a.txt"), ("artifact", "dist/sub/big.bin")} <= set(events[:finished])


async def test_an_artifact_symlink_leaving_the_workspace_fails_the_stage(
    fake: FakeController, tmp_path: Path
) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("private")
    async with running_agent(fake, tmp_path / "state") as (_agent, _task):
        await serving(fake)
        lease = fake.push_lease(spec(f"echo fine > ok.txt && ln -s {outside} leak.txt", artifacts=("*.txt",)))
        await fake.wait_for(lambda: fake.final_update(lease), timeout=20)
    final = fake.final_update(lease)
    assert final is not None and final.status is StageStatus.ERROR
    assert (
        final.message
        == "artifacts: artifact 'leak.txt' is a symlink pointing outside the workspace; refusing it"
    )
    assert lease not in fake.uploaded


async def test_artifacts_over_the_controller_limit_fail_the_stage_with_its_message(
    fake: FakeController, tmp_path: Path
) -> None:
    fake.artifact_limit = 10
    async with running_agent(fake, tmp_path) as (_agent, _task):
        await serving(fake)
        lease = fake.push_lease(spec("echo 0123456789 > big.txt", artifacts=("big.txt",)))
        await fake.wait_for(lambda: fake.final_update(lease), timeout=20)
    final = fake.final_update(lease)
    assert final is not None and final.status is StageStatus.ERROR
    assert final.message == "artifacts of stage 'x' exceed the limit of 10 bytes (BUILDIT_ARTIFACT_MAX_BYTES)"
    assert fake.lines(lease)[-1] == f"error: {final.message}"


async def test_needed_artifacts_are_in_the_workspace_before_the_commands_run(
    fake: FakeController, tmp_path: Path
) -> None:
    fake.downloads["lease-test"] = [
        ("dist/a.txt", b"hello from build\n", "build"),
        ("dist/empty", b"", "build"),
        ("big.bin", bytes(range(256)) * 1000, "package"),
    ]
    async with running_agent(fake, tmp_path) as (_agent, _task):
        await serving(fake)
        lease = fake.push_lease(
            spec("cat dist/a.txt", "wc -c < big.bin", "test -f dist/empty", needs=("build", "package")),
            lease_id="lease-test",
        )
        await fake.wait_for(lambda: fake.final_update(lease), timeout=20)
    final = fake.final_update(lease)
    assert final is not None and final.status is StageStatus.SUCCEEDED, (final, fake.lines(lease))
    lines = fake.lines(lease)
    assert lines[0] == "restored 3 artifact file(s), 256017 bytes, from build, package"
    assert "hello from build" in lines and "256000" in lines
    assert fake.download_requests == ["lease-test"]


async def test_a_stage_without_needs_downloads_nothing(fake: FakeController, tmp_path: Path) -> None:
    async with running_agent(fake, tmp_path) as (_agent, _task):
        await serving(fake)
        lease = fake.push_lease(spec("true"))
        await fake.wait_for(lambda: fake.final_update(lease))
    assert fake.download_requests == []


def _header(path: str, content: bytes, sha: str | None = None) -> pb.ArtifactChunk:
    import hashlib

    digest = sha if sha is not None else hashlib.sha256(content).hexdigest()
    return pb.ArtifactChunk(
        header=pb.ArtifactHeader(path=path, size=len(content), sha256=digest, stage="build")
    )


@pytest.mark.parametrize(
    ("messages", "expected"),
    [
        (
            [_header("../escape.txt", b"x"), pb.ArtifactChunk(data=b"x")],
            "artifact path '../escape.txt' contains '..'; artifacts must stay in the workspace",
        ),
        (
            [_header("/tmp/abs.txt", b"x"), pb.ArtifactChunk(data=b"x")],
            "artifact path '/tmp/abs.txt' is absolute; artifact paths are relative to the workspace",
        ),
        (
            [_header("a.txt", b"abc", sha="0" * 64), pb.ArtifactChunk(data=b"abc")],
            "artifact 'a.txt' arrived corrupted (sha256 mismatch)",
        ),
        (
            [_header("a.txt", b"abc"), pb.ArtifactChunk(data=b"ab")],
            "artifact 'a.txt' arrived with 2 of its 3 bytes",
        ),
        ([pb.ArtifactChunk(data=b"ab")], "the controller sent artifact data before any header"),
    ],
)
async def test_bad_downloads_fail_the_stage_and_write_nothing_outside(
    fake: FakeController, tmp_path: Path, messages: list[pb.ArtifactChunk], expected: str
) -> None:
    fake.raw_downloads["lease-bad"] = messages
    marker = tmp_path / "ran"
    async with running_agent(fake, tmp_path / "state") as (_agent, _task):
        await serving(fake)
        lease = fake.push_lease(spec(f"touch {marker}", needs=("build",)), lease_id="lease-bad")
        await fake.wait_for(lambda: fake.final_update(lease), timeout=20)
    final = fake.final_update(lease)
    assert final is not None and (final.status, final.message) == (StageStatus.ERROR, expected)
    assert not marker.exists()
    assert not (tmp_path / "state" / "escape.txt").exists() and not (tmp_path / "escape.txt").exists()


async def test_a_download_does_not_write_through_a_symlink_from_the_source(
    fake: FakeController, tmp_path: Path, upstream: Upstream, git_server: GitHttpServer
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (upstream.work / "dist").symlink_to(outside)  # a repository may hold any symlink
    (upstream.work / "notes.txt").symlink_to(outside / "notes.txt")
    sha = upstream.commit("app.txt", "v1")
    fake.downloads["lease-link"] = [("notes.txt", b"artifact\n", "build")]
    source = WorkspaceSource(git_server.url("project.git"), sha)
    async with running_agent(fake, tmp_path / "state") as (_agent, _task):
        await serving(fake)
        lease = fake.push_lease(spec("cat notes.txt", needs=("build",), source=source), lease_id="lease-link")
        await fake.wait_for(lambda: fake.final_update(lease), timeout=30)
        fake.downloads["lease-link2"] = [("dist/a.txt", b"x", "build")]
        lease2 = fake.push_lease(spec("true", needs=("build",), source=source), lease_id="lease-link2")
        await fake.wait_for(lambda: fake.final_update(lease2), timeout=30)
    final = fake.final_update(lease)
    assert final is not None and final.status is StageStatus.SUCCEEDED, (final, fake.lines(lease))
    assert "artifact" in fake.lines(lease)  # the link was replaced by the file
    assert list(outside.iterdir()) == []
    final2 = fake.final_update(lease2)
    assert final2 is not None and (final2.status, final2.message) == (
        StageStatus.ERROR,
        "artifact 'dist/a.txt' would be restored outside the workspace",
    )
