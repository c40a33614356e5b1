"""The git gate in real repositories: hooks installed in temporary repos only."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from nixify.errors import ConfigError
from nixify.gitgate.hooks import MARKER, install_hooks

OPERATOR = "alice"


def env_for(actor: str | None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NIXIFY_", "GIT_"))}
    if actor is not None:
        env["NIXIFY_ACTOR"] = actor
    env.update(extra)
    return env


def run(repo: Path, *args: str, actor: str | None = None, ok: bool = True,
        **extra: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True,
        env=env_for(actor, **extra),
    )
    if ok:
        assert proc.returncode == 0, proc.stderr
    return proc


def head(repo: Path) -> str:
    return run(repo, "rev-parse", "HEAD").stdout.strip()


def commit(repo: Path, name: str, message: str, actor: str | None = None, ok: bool = True,
           content: str | None = None, no_verify: bool = False,
           sign: bool = False) -> subprocess.CompletedProcess[str]:
    (repo / name).write_text(content if content is not None else f"{name}\n")
    run(repo, "add", name)
    flags = ["--no-verify"] * no_verify + ["-S"] * sign
    return run(repo, "commit", "-q", *flags, "-m", message, actor=actor, ok=ok)


def make_key(directory: Path, name: str) -> Path:
    """An ed25519 key pair without passphrase: ``directory/name`` and ``.pub``."""
    directory.mkdir(parents=True, exist_ok=True)
    key = directory / name
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(key)],
                   check=True, capture_output=True)
    return key


def allowed_signers_line(principal: str, key: Path) -> str:
    kind, blob = key.with_name(key.name + ".pub").read_text().split()[:2]
    return f"{principal} {kind} {blob}\n"


def use_key(repo: Path, key: Path, signers: Path) -> None:
    """Git's own SSH commit signing: gpg.format ssh, the key, the allowed-signers file."""
    run(repo, "config", "gpg.format", "ssh")
    run(repo, "config", "user.signingkey", str(key))
    run(repo, "config", "gpg.ssh.allowedSignersFile", str(signers))


@pytest.fixture(scope="session")
def operator_key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_key(tmp_path_factory.mktemp("keys"), OPERATOR)


@pytest.fixture
def signers(tmp_path: Path, operator_key: Path) -> Path:
    path = tmp_path / "allowed_signers"
    path.write_text(allowed_signers_line(OPERATOR, operator_key))
    return path


@pytest.fixture
def repo(tmp_path: Path, operator_key: Path, signers: Path) -> Path:
    r = tmp_path / "repo"
    r.mkdir()
    run(r, "init", "-q", "-b", "main")
    run(r, "config", "user.name", "Test")
    run(r, "config", "user.email", "test@example.invalid")
    run(r, "config", "nixify.operators", OPERATOR)
    use_key(r, operator_key, signers)
    install_hooks(r)
    commit(r, "README.md", "docs: start", actor=OPERATOR, sign=True)
    return r


@pytest.fixture
def remote(tmp_path: Path, repo: Path) -> Path:
    bare = tmp_path / "remote.git"
    run(tmp_path, "init", "-q", "--bare", str(bare))
    run(repo, "remote", "add", "origin", str(bare))
    run(repo, "push", "-q", "origin", "main", actor=OPERATOR)
    return bare


def test_agent_commit_on_main_refused(repo: Path) -> None:
    before = head(repo)
    proc = commit(repo, "a.txt", "feat: on main", ok=False)
    assert proc.returncode != 0
    assert "'main' is a protected branch" in proc.stderr
    assert head(repo) == before
    proc = commit(repo, "b.txt", "feat: named agent on main", actor="claude", ok=False)
    assert proc.returncode != 0 and "actor: claude" in proc.stderr


def test_operator_commits_on_main(repo: Path) -> None:
    before = head(repo)
    commit(repo, "a.txt", "chore: operator on main", actor=OPERATOR)
    assert head(repo) != before


@pytest.mark.parametrize(
    ("branch", "actor", "accepted"),
    [
        ("claude/feat/x", None, True),
        ("claude/feat/x", "claude", True),
        ("gemini/test/hooks/deep", None, True),
        ("claude/wip", None, False),
        ("claude/feature/x", None, False),
        ("mallory/feat/x", None, False),
        ("claude/feat/x", "gemini", False),  # another agent's branch
        ("operator/x", None, False),
        ("operator/x", OPERATOR, True),
        (f"{OPERATOR}/feat/x", "codex", False),  # the operator's personal namespace
        ("master", OPERATOR, True),
        ("wip", OPERATOR, False),  # the naming rule holds for the operator too
    ],
)
def test_branch_policy(repo: Path, branch: str, actor: str | None, accepted: bool) -> None:
    run(repo, "checkout", "-q", "-b", branch)
    before = head(repo)
    proc = commit(repo, "x.txt", "feat: x", actor=actor, ok=False)
    assert (proc.returncode == 0) == accepted, proc.stderr
    assert (head(repo) != before) == accepted


def test_refusal_explains_the_name_shape(repo: Path) -> None:
    run(repo, "checkout", "-q", "-b", "claude/wip")
    proc = commit(repo, "x.txt", "feat: x", ok=False)
    assert "<owner>/<type>/<topic>" in proc.stderr
    assert "feat fix refactor docs chore ci test perf build style revert" in proc.stderr


@pytest.mark.parametrize(
    ("message", "accepted"),
    [
        ("feat(leak): scan history", True),
        ("fix: quote the builder", True),
        ("refactor(gitgate)!: one gate", True),
        ("fixup! feat(leak): scan history", True),
        ("wip", False),
        ("feat:no space", False),
        ("feature(x): y", False),
        ("feat(): empty scope", False),
        ("Merge branch 'x'", False),
        ("feat(x): ", False),
    ],
)
def test_commit_message_gate(repo: Path, message: str, accepted: bool) -> None:
    run(repo, "checkout", "-q", "-b", "claude/feat/msg")
    proc = commit(repo, "m.txt", message, ok=False)
    assert (proc.returncode == 0) == accepted, proc.stderr
    if not accepted:
        assert "expected: type(scope): summary" in proc.stderr


def test_hooks_install_is_idempotent_and_refuses_foreign_hooks(repo: Path) -> None:
    hooks = repo / ".git" / "hooks"
    assert {a.action for a in install_hooks(repo)} == {"unchanged"}
    (hooks / "commit-msg").write_text("#!/bin/sh\necho mine\n")
    with pytest.raises(ConfigError, match="not written by nixify"):
        install_hooks(repo)
    assert (hooks / "commit-msg").read_text() == "#!/bin/sh\necho mine\n"
    actions = {a.path.name: a.action for a in install_hooks(repo, force=True)}
    assert actions["commit-msg"].startswith("replaced")
    assert (hooks / "commit-msg.pre-nixify").read_text() == "#!/bin/sh\necho mine\n"
    assert MARKER in (hooks / "commit-msg").read_text()


def test_hooks_install_cli_honours_core_hookspath(repo: Path, tmp_path: Path) -> None:
    custom = tmp_path / "myhooks"
    run(repo, "config", "core.hooksPath", str(custom))
    proc = subprocess.run(
        [str(Path(sys.executable).with_name("nixify")), "hooks", "install", "--repo", str(repo)],
        capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in custom.iterdir()) == [
        "commit-msg", "nixify-gate", "pre-commit", "pre-push"
    ]
    assert commit(repo, "y.txt", "feat: refused on main", ok=False).returncode != 0


def test_push_policy(repo: Path, remote: Path) -> None:
    run(repo, "checkout", "-q", "-b", "claude/feat/push")
    commit(repo, "p.txt", "feat: push me")
    proc = run(repo, "push", "-q", "origin", "claude/feat/push")
    assert "leak scan of the pushed objects: clean" in proc.stderr
    proc = run(repo, "push", "origin", "HEAD:main", ok=False)
    assert proc.returncode != 0 and "'main' is a protected branch" in proc.stderr
    proc = run(repo, "push", "origin", "HEAD:claude/nope", ok=False)
    assert proc.returncode != 0 and "<owner>/<type>/<topic>" in proc.stderr
    proc = run(repo, "push", "origin", "--delete", "main", ok=False)
    assert proc.returncode != 0 and "deleting protected branch" in proc.stderr
    run(repo, "tag", "v1")
    assert run(repo, "push", "origin", "v1", ok=False).returncode != 0
    # Even the operator's push to main is refused while its tip is not operator-signed.
    proc = run(repo, "push", "origin", "HEAD:main", actor=OPERATOR, ok=False)
    assert proc.returncode != 0 and "not signed by an operator (unsigned)" in proc.stderr
    run(repo, "commit", "-q", "-S", "--allow-empty", "-m", "chore: sign off", actor=OPERATOR)
    run(repo, "push", "-q", "origin", "HEAD:main", actor=OPERATOR)
    assert run(remote, "rev-parse", "main").stdout == run(repo, "rev-parse", "HEAD").stdout


def test_push_refused_when_a_pushed_commit_leaks_even_if_later_deleted(
    repo: Path, remote: Path
) -> None:
    run(repo, "checkout", "-q", "-b", "claude/feat/leaky")
    addr = ".".join(["192", "168", "3", "4"])
    commit(repo, "hosts.nix", "feat: hosts", content=f'{{ nas = "{addr}"; }}\n',
           no_verify=True)  # the commit-time scan would refuse it
    commit(repo, "hosts.nix", "fix: hosts by role", content='{ nas = "nas"; }\n')
    proc = run(repo, "push", "origin", "claude/feat/leaky", ok=False)
    assert proc.returncode != 0
    assert "hosts.nix:1:" in proc.stderr and "private-ipv4" in proc.stderr
    assert addr not in proc.stderr
    assert run(remote, "rev-parse", "--verify", "-q", "claude/feat/leaky", ok=False).returncode


def test_push_runs_configured_checks_locally(repo: Path, remote: Path) -> None:
    run(repo, "checkout", "-q", "-b", "claude/test/checks")
    commit(repo, "c.txt", "test: checks")
    run(repo, "config", "nixify.constrained", "false")
    run(repo, "config", "--add", "nixify.check", "test -f c.txt && test -f README.md")
    proc = run(repo, "push", "-q", "origin", "claude/test/checks")
    assert "check (local" in proc.stderr
    run(repo, "config", "--add", "nixify.check", "echo failing-check >&2; exit 3")
    commit(repo, "d.txt", "test: more")
    proc = run(repo, "push", "origin", "claude/test/checks", ok=False)
    assert proc.returncode != 0 and "check failed (exit 3)" in proc.stderr


def test_push_rechecks_messages_of_commits_made_with_no_verify(repo: Path, remote: Path) -> None:
    run(repo, "checkout", "-q", "-b", "claude/fix/sneaky")
    (repo / "s.txt").write_text("s\n")
    run(repo, "add", "s.txt")
    run(repo, "commit", "-q", "--no-verify", "-m", "did things")
    sha = run(repo, "rev-parse", "--short", "HEAD").stdout.strip()
    proc = run(repo, "push", "origin", "claude/fix/sneaky", ok=False)
    assert proc.returncode != 0
    assert "refused: commit message 'did things'" in proc.stderr and sha in proc.stderr
    run(repo, "commit", "-q", "--amend", "-m", "fix: did things properly")
    run(repo, "push", "-q", "origin", "claude/fix/sneaky")


def test_gate_steps_from_the_nixify_cli(repo: Path, tmp_path: Path) -> None:
    nixify = str(Path(sys.executable).with_name("nixify"))
    msg = tmp_path / "MSG"
    msg.write_text("# comment\n\nfeat(x): fine\n")
    ok = subprocess.run([nixify, "gate", "commit-msg", str(msg)], cwd=repo, env=env_for(None))
    assert ok.returncode == 0
    msg.write_text("nope\n")
    bad = subprocess.run([nixify, "gate", "commit-msg", str(msg)], cwd=repo,
                         capture_output=True, text=True, env=env_for(None))
    assert bad.returncode == 1 and "expected: type(scope): summary" in bad.stderr
    on_main = subprocess.run([nixify, "gate", "pre-commit"], cwd=repo, capture_output=True,
                             text=True, env=env_for(None))
    assert on_main.returncode == 1 and "protected" in on_main.stderr


def test_agent_cannot_delete_another_agents_branch(repo: Path, remote: Path) -> None:
    run(repo, "checkout", "-q", "-b", "gemini/feat/theirs")
    commit(repo, "t.txt", "feat: theirs")
    run(repo, "push", "-q", "origin", "gemini/feat/theirs", actor="gemini")
    proc = run(repo, "push", "origin", "--delete", "gemini/feat/theirs", actor="claude", ok=False)
    assert proc.returncode != 0 and "belongs to gemini" in proc.stderr
    run(repo, "push", "-q", "origin", "--delete", "gemini/feat/theirs", actor="gemini")


def test_pre_push_command_with_spaces_in_the_interpreter_path(
    repo: Path, remote: Path, tmp_path: Path
) -> None:
    spaced = tmp_path / "dir with space"
    spaced.mkdir()
    (spaced / "py").write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    (spaced / "py").chmod(0o755)
    install_hooks(repo, nixify_cmd=f"'{spaced / 'py'}' -m nixify.gitgate")
    run(repo, "checkout", "-q", "-b", "claude/fix/spaces")
    commit(repo, "s.txt", "fix: spaces")
    proc = run(repo, "push", "-q", "origin", "claude/fix/spaces")
    assert "leak scan of the pushed objects: clean" in proc.stderr


def test_push_honours_the_leak_allowlist(repo: Path, remote: Path) -> None:
    from nixify.leak.scanner import fingerprint

    addr = ".".join(["10", "20", "30", "40"])
    run(repo, "checkout", "-q", "-b", "claude/docs/example")
    commit(repo, "example.md", "docs: example", content=f"e.g. {addr}\n", no_verify=True)
    assert run(repo, "push", "origin", "claude/docs/example", ok=False).returncode != 0
    commit(repo, ".leak-allowlist", "docs: allow the example",
           content=f"example.md private-ipv4 {fingerprint(addr.encode())} documented example\n")
    run(repo, "push", "-q", "origin", "claude/docs/example")
