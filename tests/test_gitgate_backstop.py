"""The backstop --no-verify cannot skip: a bare repository's pre-receive hook and
`nixify gate verify`, in real scratch repositories."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from test_gitgate_hooks import (  # noqa: F401 - fixtures
    OPERATOR,
    allowed_signers_line,
    commit,
    env_for,
    make_key,
    operator_key,
    repo,
    run,
    signers,
)

NIXIFY = str(Path(sys.executable).with_name("nixify"))
ADDR = ".".join(["192", "168", "7", "9"])  # a private address, assembled so no file holds it


def nixify(*args: str, cwd: Path, actor: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([NIXIFY, *args], cwd=cwd, capture_output=True, text=True,
                          env=env_for(actor))


@pytest.fixture
def server(tmp_path: Path, repo: Path, signers: Path) -> Path:  # noqa: F811
    bare = tmp_path / "server.git"
    run(tmp_path, "init", "-q", "--bare", str(bare))
    run(bare, "config", "nixify.operators", OPERATOR)
    proc = nixify("hooks", "install", "--server", str(bare), "--allowed-signers", str(signers),
                  cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    run(repo, "remote", "add", "origin", str(bare))
    run(repo, "push", "-q", "origin", "main", actor=OPERATOR)  # its tip is operator-signed
    return bare


def tip(repo: Path, ref: str) -> str:  # noqa: F811
    return run(repo, "rev-parse", ref).stdout.strip()


def test_server_hook_calls_the_installing_nixify_by_absolute_path(server: Path) -> None:
    hook = (server / "hooks" / "pre-receive").read_text()
    line = next(ln for ln in hook.splitlines() if ln.startswith("exec "))
    words = shlex.split(line)
    assert words[2:] == ["-m", "nixify.gitgate", "gate", "pre-receive"], line
    # the interpreter of the nixify that installed it (a venv's python or python3 link)
    assert Path(words[1]).is_absolute()
    assert Path(words[1]).resolve() == Path(sys.executable).resolve()
    assert run(server, "config", "gpg.ssh.allowedSignersFile").stdout.strip()


def test_no_verify_push_to_a_protected_branch_is_refused(repo: Path, server: Path) -> None:  # noqa: F811
    before = tip(server, "main")
    (repo / "junk.txt").write_text("junk\n")
    run(repo, "add", "junk.txt")
    run(repo, "commit", "-q", "--no-verify", "-m", "wip junk")
    sha = tip(repo, "HEAD")[:10]
    proc = run(repo, "push", "--no-verify", "origin", "main", ok=False)
    assert proc.returncode != 0
    assert f"{sha} 'wip junk': message is not `type(scope): summary`" in proc.stderr
    assert f"{sha} 'wip junk': not signed by an operator (unsigned)" in proc.stderr
    assert tip(server, "main") == before


def test_unsigned_operator_branch_update_refused_signed_accepted(
    repo: Path, server: Path, tmp_path: Path  # noqa: F811
) -> None:
    run(repo, "checkout", "-q", "-b", "claude/feat/work")
    commit(repo, "w.txt", "feat: the work")
    run(repo, "push", "-q", "origin", "claude/feat/work")  # an agent branch: no signature needed
    # The agent's (well-formed, unsigned) commit cannot become an operator branch or main.
    for target in ("operator/x", "main"):
        proc = run(repo, "push", "--no-verify", "origin", f"HEAD:{target}", ok=False)
        assert proc.returncode != 0, target
        assert "'feat: the work': not signed by an operator (unsigned)" in proc.stderr
    # A key not listed for an operator does not count either.
    mallory = make_key(tmp_path / "mkeys", "mallory")
    run(repo, "commit", "-q", "--allow-empty", "-m", "chore: looks official",
        f"-S{mallory}", "--no-verify")
    proc = run(repo, "push", "--no-verify", "origin", "HEAD:main", ok=False)
    assert proc.returncode != 0
    assert "signed by a key the allowed-signers file does not list" in proc.stderr
    assert run(server, "rev-parse", "--verify", "-q", "operator/x", ok=False).returncode != 0
    # The operator integrates: one signed commit on top; the server accepts it.
    run(repo, "reset", "-q", "--hard", "HEAD~1")
    run(repo, "checkout", "-q", "main")
    proc = nixify("integrate", "claude/feat/work", cwd=repo, actor=OPERATOR)
    assert proc.returncode == 0, proc.stderr
    run(repo, "push", "-q", "origin", "main", actor=OPERATOR)
    assert tip(server, "main") == tip(repo, "main")
    assert run(server, "log", "-1", "--format=%G?", "main").stdout.strip() == "G"


def test_protected_branch_moves_forward_only_and_is_never_deleted(
    repo: Path, server: Path  # noqa: F811
) -> None:
    run(repo, "checkout", "-q", "-b", "operator/y")
    run(repo, "commit", "-q", "-S", "--allow-empty", "-m", "chore: signed", actor=OPERATOR)
    run(repo, "push", "-q", "origin", "operator/y", actor=OPERATOR)
    run(repo, "reset", "-q", "--hard", "HEAD~1")
    run(repo, "commit", "-q", "-S", "--allow-empty", "-m", "chore: rewritten", actor=OPERATOR)
    proc = run(repo, "push", "--no-verify", "-f", "origin", "operator/y", ok=False)
    assert proc.returncode != 0 and "is not a fast-forward" in proc.stderr
    proc = run(repo, "push", "--no-verify", "origin", ":operator/y", ok=False)
    assert proc.returncode != 0 and "deleting a protected branch is refused" in proc.stderr
    assert run(server, "rev-parse", "--verify", "-q", "operator/y").returncode == 0


def test_no_verify_push_of_an_agent_branch_is_still_checked(repo: Path, server: Path) -> None:  # noqa: F811
    run(repo, "checkout", "-q", "-b", "claude/feat/leaky")
    commit(repo, "hosts.nix", "feat: hosts", content=f'{{ nas = "{ADDR}"; }}\n', no_verify=True)
    proc = run(repo, "push", "--no-verify", "origin", "claude/feat/leaky", ok=False)
    assert proc.returncode != 0
    assert "leak: hosts.nix:1:" in proc.stderr and "private-ipv4" in proc.stderr
    assert ADDR not in proc.stderr
    proc = run(repo, "push", "--no-verify", "origin", "HEAD:wip", ok=False)
    assert proc.returncode != 0 and "does not follow <owner>/<type>/<topic>" in proc.stderr
    assert run(server, "for-each-ref", "refs/heads/claude", "refs/heads/wip").stdout == ""


@pytest.fixture
def bad_range(repo: Path) -> tuple[str, str, str]:  # noqa: F811
    """claude/feat/mixed off main: a good commit, a `wip junk` one, a leaking one."""
    run(repo, "checkout", "-q", "-b", "claude/feat/mixed")
    commit(repo, "good.txt", "feat: good")
    good = tip(repo, "HEAD")
    commit(repo, "junk.txt", "wip junk", no_verify=True)
    junk = tip(repo, "HEAD")
    commit(repo, "net.nix", "feat(net): addresses", content=f"gw = {ADDR}\n", no_verify=True)
    leak = tip(repo, "HEAD")
    return good, junk, leak


def test_verify_names_each_offending_commit(repo: Path, bad_range: tuple[str, str, str]) -> None:  # noqa: F811
    good, junk, leak = bad_range
    proc = nixify("gate", "verify", "main..claude/feat/mixed", cwd=repo)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    out = proc.stdout
    assert "claude/feat/mixed: 3 commit(s) in main..claude/feat/mixed" in out
    assert f"{junk[:10]} 'wip junk': message is not `type(scope): summary`" in out
    assert f"{leak[:10]} 'feat(net): addresses': leak: net.nix:1:6: private-ipv4" in out
    assert good[:10] not in out and ADDR not in out
    assert "2 of 3 commit(s) refused" in out


def test_verify_default_range_is_the_upstream_and_says_when_there_is_none(
    repo: Path, bad_range: tuple[str, str, str], tmp_path: Path  # noqa: F811
) -> None:
    proc = nixify("gate", "verify", cwd=repo)
    assert proc.returncode == 2
    assert "'claude/feat/mixed' has no upstream" in proc.stderr
    assert "nixify gate verify main..HEAD" in proc.stderr
    bare = tmp_path / "up.git"
    run(tmp_path, "init", "-q", "--bare", str(bare))
    run(repo, "remote", "add", "up", str(bare))
    run(repo, "push", "-q", "--no-verify", "up", "HEAD~2:refs/heads/claude/feat/mixed")
    run(repo, "branch", "-q", "--set-upstream-to=up/claude/feat/mixed")
    proc = nixify("gate", "verify", cwd=repo)
    assert proc.returncode == 1 and "2 commit(s) in up/claude/feat/mixed..HEAD" in proc.stdout
    run(repo, "reset", "-q", "--hard", "HEAD~2")
    commit(repo, "fine.txt", "fix: fine")
    proc = nixify("gate", "verify", cwd=repo)
    assert proc.returncode == 0 and "1 commit(s) in up/claude/feat/mixed..HEAD: clean" in (
        proc.stdout)


def test_verify_a_protected_branch_needs_an_operator_signature(repo: Path) -> None:  # noqa: F811
    commit(repo, "a.txt", "feat: unsigned on main", actor=OPERATOR)
    proc = nixify("gate", "verify", "HEAD~1..HEAD", cwd=repo)
    assert proc.returncode == 1 and "not signed by an operator (unsigned)" in proc.stdout
    run(repo, "commit", "-q", "-S", "--allow-empty", "-m", "chore: sign off", actor=OPERATOR)
    proc = nixify("gate", "verify", "HEAD~2..HEAD", "--branch", "main", cwd=repo)
    assert proc.returncode == 0, proc.stdout
