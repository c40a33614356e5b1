"""Amend at source: `nixify fixup COMMIT` on an agent's own branch; integrate refuses
chains that still hold fixup!/squash!/amend! commits."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from test_gitgate_hooks import (  # noqa: F401 - fixtures
    OPERATOR,
    commit,
    env_for,
    head,
    operator_key,
    repo,
    run,
    signers,
)

NIXIFY = str(Path(sys.executable).with_name("nixify"))


def nixify(*args: str, cwd: Path, actor: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([NIXIFY, *args], cwd=cwd, capture_output=True, text=True,
                          env=env_for(actor))


def subjects(repo: Path, rng: str) -> list[str]:  # noqa: F811
    return run(repo, "log", "--reverse", "--format=%s", rng).stdout.splitlines()


def test_fixup_folds_the_fix_into_the_commit_that_introduced_the_fault(repo: Path) -> None:  # noqa: F811
    run(repo, "checkout", "-q", "-b", "claude/feat/topic")
    commit(repo, "a.txt", "feat: a", content="a is wrong\n")
    faulty = head(repo)
    commit(repo, "b.txt", "feat: b")
    (repo / "a.txt").write_text("a is right\n")
    (repo / "notes.txt").write_text("unstaged, untouched\n")
    run(repo, "add", "a.txt")
    (repo / "b.txt").write_text("b, edited but not staged\n")
    proc = nixify("fixup", faulty[:10], cwd=repo, actor="claude")
    assert proc.returncode == 0, proc.stderr
    assert f"folded the staged fix into {faulty[:10]} 'feat: a'" in proc.stdout
    assert subjects(repo, "main..HEAD") == ["feat: a", "feat: b"]  # no fixup! left, same shape
    assert run(repo, "show", "HEAD~1:a.txt").stdout == "a is right\n"
    assert run(repo, "show", "HEAD:b.txt").stdout == "b.txt\n"
    assert (repo / "b.txt").read_text() == "b, edited but not staged\n"  # kept (autostash)
    assert (repo / "notes.txt").exists()
    assert run(repo, "rev-parse", "HEAD~2").stdout.strip() == run(
        repo, "rev-parse", "main").stdout.strip()


def test_fixup_refuses_protected_branches_and_published_commits(repo: Path) -> None:  # noqa: F811
    base = head(repo)
    (repo / "README.md").write_text("changed\n")
    run(repo, "add", "README.md")
    proc = nixify("fixup", "HEAD", cwd=repo, actor=OPERATOR)
    assert proc.returncode == 2 and "'main' is a protected branch" in proc.stderr
    run(repo, "checkout", "-q", "-b", "claude/fix/x")
    proc = nixify("fixup", base, cwd=repo, actor="claude")
    assert proc.returncode == 2 and "is already on refs/heads/main" in proc.stderr
    assert head(repo) == base
    run(repo, "reset", "-q", "--hard")
    commit(repo, "x.txt", "fix: x")
    proc = nixify("fixup", "HEAD", cwd=repo, actor="claude")
    assert proc.returncode == 2 and "nothing staged" in proc.stderr
    run(repo, "checkout", "-q", "-b", "gemini/fix/theirs")
    (repo / "x.txt").write_text("y\n")
    run(repo, "add", "x.txt")
    proc = nixify("fixup", "HEAD", cwd=repo, actor="claude")
    assert proc.returncode == 2 and "belongs to gemini" in proc.stderr


def test_integrate_refuses_a_chain_with_fixup_commits(repo: Path) -> None:  # noqa: F811
    run(repo, "checkout", "-q", "-b", "claude/feat/unfolded")
    commit(repo, "a.txt", "feat: a")
    target = head(repo)
    (repo / "a.txt").write_text("better\n")
    run(repo, "add", "a.txt")
    run(repo, "commit", "-q", f"--fixup={target}")
    fix = head(repo)
    run(repo, "checkout", "-q", "main")
    before = head(repo)
    proc = nixify("integrate", "claude/feat/unfolded", cwd=repo, actor=OPERATOR)
    assert proc.returncode == 2
    assert f"{fix[:10]} 'fixup! feat: a'" in proc.stderr and "nixify fixup" in proc.stderr
    assert head(repo) == before
    run(repo, "checkout", "-q", "claude/feat/unfolded")
    run(repo, "rebase", "-q", "-i", "--autosquash", "main", GIT_SEQUENCE_EDITOR="true")
    run(repo, "checkout", "-q", "main")
    proc = nixify("integrate", "claude/feat/unfolded", cwd=repo, actor=OPERATOR)
    assert proc.returncode == 0, proc.stderr
    assert subjects(repo, f"{before}..main") == [
        "feat: a", "chore(integrate): claude/feat/unfolded into main"]


def test_integrate_refuses_a_chain_with_a_bad_message_or_a_leak(repo: Path) -> None:  # noqa: F811
    run(repo, "checkout", "-q", "-b", "claude/feat/sloppy")
    commit(repo, "s.txt", "did stuff", no_verify=True)
    run(repo, "checkout", "-q", "main")
    proc = nixify("integrate", "claude/feat/sloppy", cwd=repo, actor=OPERATOR)
    assert proc.returncode == 2 and "'did stuff': message is not" in proc.stderr
