"""`nixify worktree new|done`: isolated work trees from the operator branch; handoff notes."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_gitgate_hooks import (  # noqa: F401 - fixtures
    OPERATOR,
    commit,
    head,
    operator_key,
    repo,
    run,
    signers,
)

from nixify.cli import main


def test_new_then_done_writes_a_handoff_note(
    repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    run(repo, "branch", "operator/x", "main")
    run(repo, "checkout", "-q", "operator/x")
    commit(repo, "op.txt", "chore: operator work", actor=OPERATOR)
    op_tip = head(repo)
    run(repo, "checkout", "-q", "main")
    run(repo, "config", "nixify.operatorBranch", "operator/x")
    monkeypatch.delenv("NIXIFY_ACTOR", raising=False)

    assert main(["worktree", "new", "claude/feat/topic", "--repo", str(repo)]) == 0
    wt = repo.parent / "repo.worktrees" / "claude-feat-topic"
    assert str(wt) in capsys.readouterr().out
    assert head(wt) == op_tip
    assert run(wt, "symbolic-ref", "--short", "HEAD").stdout.strip() == "claude/feat/topic"

    commit(wt, "work.txt", "feat(topic): the work", actor="claude")  # the hooks apply here too
    assert commit(wt, "bad.txt", "did stuff", actor="claude", ok=False).returncode != 0
    run(wt, "reset", "-q", "HEAD")
    (wt / "bad.txt").unlink()

    (wt / "dirty.txt").write_text("unsaved\n")
    assert main(["worktree", "done", "--repo", str(wt)]) == 2
    assert "uncommitted changes" in capsys.readouterr().err and wt.exists()
    (wt / "dirty.txt").unlink()

    rc = main(["worktree", "done", "--repo", str(wt), "--open", "tests for the edge case",
               "--note", "Rebased on operator/x once."])
    assert rc == 0
    note = repo / "handoff" / "claude-feat-topic.md"
    assert str(note) in capsys.readouterr().out
    text = note.read_text()
    assert "# Handoff: claude/feat/topic" in text
    assert f"forked from: `operator/x` at `{op_tip[:12]}`" in text
    assert "feat(topic): the work" in text and "work.txt" in text
    assert "- tests for the edge case" in text and "Rebased on operator/x once." in text
    assert not wt.exists()
    assert run(repo, "rev-parse", "--verify", "-q", "claude/feat/topic").returncode == 0


def test_new_refuses_bad_names_and_protected_refs(
    repo: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,  # noqa: F811
) -> None:
    monkeypatch.delenv("NIXIFY_ACTOR", raising=False)
    for name in ("claude/wip", "main", f"{OPERATOR}/feat/x"):
        assert main(["worktree", "new", name, "--repo", str(repo)]) == 2
        assert "refused" in capsys.readouterr().err
    assert main(["worktree", "new", "claude/feat/a", "--from", "nope", "--repo", str(repo)]) == 2
    assert "'nope' does not exist" in capsys.readouterr().err


def test_done_in_the_main_work_tree_is_refused(
    repo: Path, capsys: pytest.CaptureFixture[str],  # noqa: F811
) -> None:
    assert main(["worktree", "done", "--repo", str(repo)]) == 2
    assert "main work tree" in capsys.readouterr().err
