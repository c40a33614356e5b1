"""Release names and refs on real git repositories: annotated tags that never move,
branches that only fast-forward."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from nixify.errors import ConfigError
from nixify.release import (
    advance_branch,
    create_tag,
    list_tags,
    parse_release_tag,
    release_branch,
    release_tag,
)
from nixify.release.git import ReleaseError, check_fast_forward


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                          text=True).stdout.strip()


def commit(repo: Path, name: str) -> str:
    (repo / name).write_text(name + "\n")
    git(repo, "add", name)
    git(repo, "commit", "-qm", f"feat: {name}")
    return git(repo, "rev-parse", "HEAD")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    r = tmp_path / "repo"
    r.mkdir()
    git(r, "init", "-q", "-b", "main")
    git(r, "config", "user.name", "t")
    git(r, "config", "user.email", "t@example.invalid")
    return r


def test_names_have_the_spec_format_and_parse_back() -> None:
    name = release_tag("nas", "20261130T041502Z", "1a2b3c4")
    assert name == "release/nas/20261130T041502Z-1a2b3c4"
    assert release_branch("nas-1") == "release/nas-1"
    parts = parse_release_tag("refs/tags/" + name)
    assert parts is not None and (parts.target, parts.stamp, parts.shortrev) == (
        "nas", "20261130T041502Z", "1a2b3c4")
    assert parts.name == name
    for bad in ("release/nas", "release/nas/2026-1a2b3c4", "v1.0", "release/nas/x/y",
                "release/nas/20261130T041502Z-XYZ"):
        assert parse_release_tag(bad) is None, bad


@pytest.mark.parametrize("target", ["", "-x", ".hidden", "a..b", "a/b", "x.lock", "a b", "é"])
def test_bad_targets_are_refused_by_name(target: str) -> None:
    with pytest.raises(ConfigError, match="release target"):
        release_branch(target)


def test_bad_stamp_or_revision_is_refused() -> None:
    with pytest.raises(ConfigError, match="UTC stamp"):
        release_tag("nas", "2026-11-30", "1a2b3c4")
    with pytest.raises(ConfigError, match="short revision"):
        release_tag("nas", "20261130T041502Z", "HEAD")


def test_an_annotated_tag_is_created_and_never_moved(repo: Path) -> None:
    c1 = commit(repo, "a")
    name = release_tag("nas", "20261130T041502Z", c1[:7])
    obj = create_tag(repo, name, c1, "evidence\n\nline two\n")
    assert git(repo, "cat-file", "-t", name) == "tag"
    assert git(repo, "rev-parse", f"{name}^{{commit}}") == c1
    assert git(repo, "tag", "-l", "--format=%(contents)", name).strip() == "evidence\n\nline two"
    c2 = commit(repo, "b")
    for target_commit in (c2, c1):  # not to another commit, not even to the same one
        with pytest.raises(ReleaseError, match=r"already exists.*never moved"):
            create_tag(repo, name, target_commit, "again\n")
    assert git(repo, "rev-parse", name) == obj


def test_the_branch_is_created_then_only_fast_forwarded(repo: Path) -> None:
    c1 = commit(repo, "a")
    up = advance_branch(repo, "nas", c1)
    assert (up.action, up.old, up.new) == ("created", None, c1)
    assert advance_branch(repo, "nas", c1).action == "unchanged"
    c2 = commit(repo, "b")
    up = advance_branch(repo, "nas", c2)
    assert (up.action, up.old, up.new) == ("advanced", c1, c2)
    assert "fast-forwarded" in up.describe()
    assert git(repo, "rev-parse", "release/nas") == c2


def test_non_fast_forward_moves_are_refused_and_change_nothing(repo: Path) -> None:
    c1 = commit(repo, "a")
    c2 = commit(repo, "b")
    advance_branch(repo, "nas", c2)
    git(repo, "checkout", "-q", "-b", "side", c1)
    side = commit(repo, "c")
    for where in (c1, side):  # backwards, and sideways
        with pytest.raises(ReleaseError, match=r"refused to move release/nas.*not a fast-forward"):
            advance_branch(repo, "nas", where)
        with pytest.raises(ReleaseError, match="not a fast-forward"):
            check_fast_forward(repo, "nas", where)
    assert git(repo, "rev-parse", "release/nas") == c2
    with pytest.raises(ReleaseError, match="not a commit"):
        advance_branch(repo, "nas", "0123456789abcdef0123456789abcdef01234567")


def test_the_branch_update_is_a_compare_and_swap(repo: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """If release/<target> moves between the check and the update, nothing is overwritten."""
    import nixify.release.git as release_git

    c1 = commit(repo, "a")
    c2 = commit(repo, "b")
    c3 = commit(repo, "c")
    advance_branch(repo, "nas", c1)
    real_check = release_git.check_fast_forward

    def racing_check(r: Path, target: str, where: str) -> None:
        real_check(r, target, where)
        git(repo, "update-ref", "refs/heads/release/nas", c2)  # someone else moves it now

    monkeypatch.setattr(release_git, "check_fast_forward", racing_check)
    with pytest.raises(ReleaseError, match="update-ref"):
        advance_branch(repo, "nas", c3)
    assert git(repo, "rev-parse", "release/nas") == c2  # the other move stands


def test_list_tags_reads_release_tags_only_oldest_first(repo: Path) -> None:
    c1 = commit(repo, "a")
    c2 = commit(repo, "b")
    create_tag(repo, release_tag("nas", "20261130T050000Z", c2[:7]), c2, "second\n")
    create_tag(repo, release_tag("nas", "20261130T040000Z", c1[:7]), c1, "first\n")
    create_tag(repo, release_tag("nas-1", "20261130T045000Z", c1[:7]), c1, "host\n")
    git(repo, "tag", "v1.0", c1)
    git(repo, "tag", "release/nas/20261130T060000Z-" + c2[:7], c2)  # lightweight: listed
    tags = list_tags(repo, "nas")
    assert [t.message.strip() for t in tags[:2]] == ["first", "second"]
    assert [t.commit for t in tags] == [c1, c2, c2]
    assert [t.annotated for t in tags] == [True, True, False]
    assert [t.parts.target for t in list_tags(repo)] == ["nas", "nas-1", "nas", "nas"]


def test_a_tag_is_made_even_without_a_configured_identity(repo: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          ) -> None:
    c1 = commit(repo, "a")
    git(repo, "config", "--unset", "user.name")
    git(repo, "config", "--unset", "user.email")
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", os.devnull)
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for var in ("GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME",
                "GIT_COMMITTER_EMAIL", "EMAIL"):
        monkeypatch.delenv(var, raising=False)
    name = release_tag("nas", "20261130T041502Z", c1[:7])
    create_tag(repo, name, c1, "evidence\n")
    assert "nixify" in git(repo, "tag", "-l", "--format=%(taggername)", name)
