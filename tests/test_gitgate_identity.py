"""Who is the operator (a key, not a variable), who owns branches (git config), the
commit-time leak scan, `nixify hooks uninstall`."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from test_gitgate_hooks import (  # noqa: F401 - fixtures
    OPERATOR,
    allowed_signers_line,
    commit,
    head,
    make_key,
    operator_key,
    repo,
    run,
    signers,
    use_key,
)

from nixify.gitgate.hooks import MARKER, install_hooks

NIXIFY = str(Path(sys.executable).with_name("nixify"))
NO_AGENT = {"SSH_AUTH_SOCK": "/nonexistent/agent.sock"}


def commit_on_main(
    repo: Path, name: str, **extra: str  # noqa: F811
) -> subprocess.CompletedProcess[str]:
    (repo / name).write_text(name + "\n")
    run(repo, "add", name)
    return run(repo, "commit", "-q", "-m", f"chore: {name}", actor=OPERATOR, ok=False, **extra)


def test_naming_the_operator_without_the_key_grants_nothing(
    repo: Path, tmp_path: Path  # noqa: F811
) -> None:
    before = head(repo)
    # No signing key configured at all: NIXIFY_ACTOR=alice is just a name.
    run(repo, "config", "--unset", "user.signingkey")
    proc = commit_on_main(repo, "a.txt", **NO_AGENT)
    assert proc.returncode != 0 and "'main' is a protected branch" in proc.stderr
    assert "'alice' is a configured operator, but this checkout does not prove it" in proc.stderr
    assert "NIXIFY_ACTOR only names which identity to use" in proc.stderr
    # A key of one's own, not listed for alice in the allowed-signers file.
    mine = make_key(tmp_path / "agent-keys", "claude")
    run(repo, "config", "user.signingkey", str(mine))
    proc = commit_on_main(repo, "b.txt", **NO_AGENT)
    assert proc.returncode != 0 and "is not listed for 'alice'" in proc.stderr
    # Alice's public key only (it is public): the private half is not here.
    pub_only = tmp_path / "copied" / "alice.pub"
    pub_only.parent.mkdir()
    pub_only.write_text((tmp_path / "allowed_signers").read_text().split(" ", 1)[1])
    run(repo, "config", "user.signingkey", str(pub_only))
    proc = commit_on_main(repo, "c.txt", **NO_AGENT)
    assert proc.returncode != 0 and "neither a readable file nor held by ssh-agent" in (
        proc.stderr)
    # The same name via git config nixify.actor changes nothing.
    run(repo, "config", "nixify.actor", OPERATOR)
    proc = run(repo, "commit", "-q", "--allow-empty", "-m", "chore: x", ok=False, **NO_AGENT)
    assert proc.returncode != 0
    assert head(repo) == before


def test_the_operators_key_in_ssh_agent_proves_the_operator(
    repo: Path, operator_key: Path, tmp_path: Path  # noqa: F811
) -> None:
    sock = tmp_path / "agent.sock"
    out = subprocess.run(["ssh-agent", "-s", "-a", str(sock)], capture_output=True, text=True,
                         check=True).stdout
    pid = int(re.search(r"SSH_AGENT_PID=(\d+)", out).group(1))  # type: ignore[union-attr]
    try:
        env = {**os.environ, "SSH_AUTH_SOCK": str(sock)}
        subprocess.run(["ssh-add", "-q", str(operator_key)], env=env, check=True,
                       capture_output=True)
        # Only the public half on disk; the private half is held by the agent.
        pub_only = tmp_path / "pub" / "alice.pub"
        pub_only.parent.mkdir()
        pub_only.write_text(operator_key.with_name("alice.pub").read_text())
        run(repo, "config", "user.signingkey", str(pub_only))
        before = head(repo)
        proc = commit_on_main(repo, "agent.txt", SSH_AUTH_SOCK=str(sock))
        assert proc.returncode == 0, proc.stderr
        assert head(repo) != before
        proc = commit_on_main(repo, "gone.txt", **NO_AGENT)
        assert proc.returncode != 0
    finally:
        os.kill(pid, signal.SIGTERM)


def test_owners_come_from_git_config(repo: Path) -> None:  # noqa: F811
    run(repo, "checkout", "-q", "-b", "mallory/feat/x")
    proc = commit(repo, "m.txt", "feat: x", ok=False)
    assert proc.returncode != 0
    assert "'mallory' is not a branch owner in this repository" in proc.stderr
    assert 'git config nixify.owners "claude gemini copilot codex mallory"' in proc.stderr
    run(repo, "config", "nixify.owners", "claude mallory")
    commit(repo, "m.txt", "feat: x")
    run(repo, "checkout", "-q", "-b", "gemini/feat/y", "main")
    assert commit(repo, "g.txt", "feat: y", ok=False).returncode != 0  # no longer an owner
    run(repo, "config", "--add", "nixify.owners", "gemini")  # entries add up
    commit(repo, "g.txt", "feat: y")


def test_conventional_types_include_perf_build_style_revert(repo: Path) -> None:  # noqa: F811
    run(repo, "checkout", "-q", "-b", "claude/perf/fast")
    for kind in ("perf", "build", "style", "revert"):
        commit(repo, f"{kind}.txt", f"{kind}(gate): {kind} change")


def test_a_leak_is_refused_at_commit_time(repo: Path) -> None:  # noqa: F811
    from nixify.leak.scanner import fingerprint

    addr = ".".join(["10", "1", "2", "3"])
    run(repo, "checkout", "-q", "-b", "claude/feat/net")
    before = head(repo)
    proc = commit(repo, "net.nix", "feat: net", content=f"gw = {addr}\n", ok=False)
    assert proc.returncode != 0
    assert "net.nix:1:6: private-ipv4" in proc.stderr and addr not in proc.stderr
    assert "the commit would record 1 leak finding(s)" in proc.stderr
    assert head(repo) == before
    # A documented example, allowlisted in the same commit, is accepted.
    (repo / ".leak-allowlist").write_text(
        f"net.nix private-ipv4 {fingerprint(addr.encode())} documented example\n")
    run(repo, "add", ".leak-allowlist")
    commit(repo, "net.nix", "feat: net", content=f"gw = {addr}\n")
    assert head(repo) != before


def test_hooks_uninstall_removes_only_nixifys_hooks(repo: Path, tmp_path: Path) -> None:  # noqa: F811
    hooks = repo / ".git" / "hooks"
    (hooks / "post-commit").write_text("#!/bin/sh\necho theirs\n")
    (hooks / "commit-msg").write_text("#!/bin/sh\necho mine\n")
    install_hooks(repo, force=True)  # the foreign commit-msg is kept as .pre-nixify
    proc = subprocess.run([NIXIFY, "hooks", "uninstall", "--repo", str(repo)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    for name in ("pre-commit", "pre-push", "nixify-gate"):
        assert not (hooks / name).exists()
    assert (hooks / "commit-msg").read_text() == "#!/bin/sh\necho mine\n"  # restored
    assert not (hooks / "commit-msg.pre-nixify").exists()
    assert (hooks / "post-commit").read_text() == "#!/bin/sh\necho theirs\n"
    assert not any(MARKER in p.read_text(errors="replace") for p in hooks.iterdir()
                   if p.is_file())
    commit(repo, "free.txt", "anything goes now")  # no gate left on main
    bare = tmp_path / "srv.git"
    run(tmp_path, "init", "-q", "--bare", str(bare))
    install_hooks(bare, server=True)
    assert (bare / "hooks" / "pre-receive").exists()
    subprocess.run([NIXIFY, "hooks", "uninstall", "--server", str(bare)], check=True,
                   capture_output=True)
    assert not (bare / "hooks" / "pre-receive").exists()


def test_help_lists_fixup() -> None:
    proc = subprocess.run([NIXIFY, "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "fixup" in proc.stdout


def test_server_install_needs_a_bare_repository(repo: Path) -> None:  # noqa: F811
    proc = subprocess.run([NIXIFY, "hooks", "install", "--server", str(repo)],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "not a bare repository" in proc.stderr
