"""`nixify integrate`: fast-forward only; a non-FF merge only by a recorded operator grant."""

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


def integrate(
    repo: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,  # noqa: F811
    *args: str, actor: str | None = OPERATOR,
) -> tuple[int, str]:
    if actor is None:
        monkeypatch.delenv("NIXIFY_ACTOR", raising=False)
    else:
        monkeypatch.setenv("NIXIFY_ACTOR", actor)
    rc = main(["integrate", "--repo", str(repo), *args])
    out = capsys.readouterr()
    return rc, out.out + out.err


@pytest.fixture
def operator_branch(repo: Path) -> str:  # noqa: F811
    run(repo, "branch", "operator/x", "main")
    return "operator/x"


def test_fast_forward(
    repo: Path, operator_branch: str, capsys: pytest.CaptureFixture[str],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    run(repo, "checkout", "-q", "-b", "claude/feat/ff", operator_branch)
    commit(repo, "f.txt", "feat: ff")
    tip = head(repo)
    run(repo, "checkout", "-q", "main", actor=OPERATOR)
    rc, out = integrate(repo, capsys, monkeypatch, "claude/feat/ff", "--into", operator_branch)
    assert rc == 0 and "fast-forward" in out
    # A straight line: one signed integration commit on top of the agent's tip.
    new = run(repo, "rev-parse", operator_branch).stdout.strip()
    assert run(repo, "rev-list", "--parents", "-n1", new).stdout.split()[1:] == [tip]
    assert run(repo, "log", "-1", "--format=%G? %GS %s", new).stdout.strip() == (
        f"G {OPERATOR} chore(integrate): claude/feat/ff into {operator_branch}")
    assert run(repo, "rev-parse", f"{new}^{{tree}}").stdout == run(
        repo, "rev-parse", f"{tip}^{{tree}}").stdout
    run(repo, "verify-commit", new)


def test_fast_forward_of_the_checked_out_branch_updates_the_work_tree(
    repo: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,  # noqa: F811
) -> None:
    run(repo, "checkout", "-q", "-b", "gemini/docs/readme")
    commit(repo, "g.txt", "docs: g")
    run(repo, "checkout", "-q", "main")
    rc, _ = integrate(repo, capsys, monkeypatch, "gemini/docs/readme")
    assert rc == 0
    assert (repo / "g.txt").exists() and run(repo, "rev-parse", "HEAD~1").stdout == run(
        repo, "rev-parse", "gemini/docs/readme").stdout
    assert run(repo, "log", "-1", "--format=%G?").stdout.strip() == "G"


def test_diverged_branch_refused_then_merged_by_grant(
    repo: Path, operator_branch: str, capsys: pytest.CaptureFixture[str],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    run(repo, "checkout", "-q", "-b", "claude/feat/div", operator_branch)
    commit(repo, "a.txt", "feat: agent side")
    agent_tip = head(repo)
    run(repo, "checkout", "-q", operator_branch)
    commit(repo, "b.txt", "chore: operator side", actor=OPERATOR)
    op_tip = head(repo)
    run(repo, "checkout", "-q", "main")

    rc, out = integrate(repo, capsys, monkeypatch, "claude/feat/div", "--into", operator_branch)
    assert rc != 0
    assert "diverged" in out and "not a fast-forward" in out and "--grant" in out
    assert run(repo, "rev-parse", operator_branch).stdout.strip() == op_tip

    wording = 'OK to merge claude/feat/div into operator/x without rebasing, "just this once".'
    rc, out = integrate(
        repo, capsys, monkeypatch, "claude/feat/div", "--into", operator_branch,
        "--grant", wording, "--grant-date", "2026-11-30T04:00:00Z",
        "--grant-scope", "this merge only",
    )
    assert rc == 0, out
    merged = run(repo, "rev-parse", operator_branch).stdout.strip()
    parents = run(repo, "rev-list", "--parents", "-n1", merged).stdout.split()[1:]
    assert parents == [op_tip, agent_tip]
    assert run(repo, "log", "-1", "--format=%G? %GS", merged).stdout.strip() == f"G {OPERATOR}"
    body = run(repo, "log", "-1", "--format=%B", merged).stdout
    assert body.startswith("chore(integrate): merge claude/feat/div into operator/x")
    assert "Operator-Grant-Date: 2026-11-30T04:00:00Z" in body
    assert "Operator-Grant-Scope: this merge only" in body
    assert f"Operator-Grant-By: {OPERATOR}" in body
    assert f"> {wording}" in body
    assert {"a.txt", "b.txt"} <= set(run(repo, "ls-tree", "--name-only", merged).stdout.split())


def test_grant_with_conflict_changes_nothing(
    repo: Path, operator_branch: str, capsys: pytest.CaptureFixture[str],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    run(repo, "checkout", "-q", "-b", "claude/fix/clash", operator_branch)
    commit(repo, "same.txt", "fix: mine", content="agent\n")
    run(repo, "checkout", "-q", operator_branch)
    commit(repo, "same.txt", "fix: theirs", actor=OPERATOR, content="operator\n")
    before = head(repo)
    run(repo, "checkout", "-q", "main")
    rc, out = integrate(repo, capsys, monkeypatch, "claude/fix/clash", "--into", operator_branch,
                        "--grant", "go ahead")
    assert rc != 0 and "conflicts" in out and "nothing changed" in out
    assert run(repo, "rev-parse", operator_branch).stdout.strip() == before


def test_agents_cannot_integrate(
    repo: Path, operator_branch: str, capsys: pytest.CaptureFixture[str],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    run(repo, "branch", "claude/feat/self", operator_branch)
    for actor in (None, "claude"):
        rc, out = integrate(repo, capsys, monkeypatch, "claude/feat/self", "--into",
                            operator_branch, actor=actor)
        assert rc != 0 and "operator-only" in out


def test_ill_named_branch_is_not_integrated(
    repo: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,  # noqa: F811
) -> None:
    run(repo, "branch", "wip", "main")
    rc, out = integrate(repo, capsys, monkeypatch, "wip")
    assert rc != 0 and "<owner>/<type>/<topic>" in out


def test_target_checked_out_in_another_work_tree_is_refused(
    repo: Path, operator_branch: str, tmp_path: Path,  # noqa: F811
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    run(repo, "branch", "claude/feat/elsewhere", operator_branch)
    run(repo, "worktree", "add", "-q", str(tmp_path / "opwt"), operator_branch)
    rc, out = integrate(repo, capsys, monkeypatch, "claude/feat/elsewhere", "--into",
                        operator_branch)
    assert rc != 0 and "checked out in that work tree" in out
