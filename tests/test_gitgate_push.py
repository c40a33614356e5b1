"""Push-time validation on a constrained host: routed to the builder, skipped visibly."""

from __future__ import annotations

import socket
from pathlib import Path

from test_gitgate_hooks import (  # noqa: F401 - fixtures
    commit,
    operator_key,
    remote,
    repo,
    run,
    signers,
)

from nixify.gitgate.validate import Builder


def dead_address() -> tuple[str, int]:
    """A 127.0.0.x address and port where nothing listens (bound, then released)."""
    host = "127.0.0.213"
    with socket.socket() as s:
        s.bind((host, 0))
        port = s.getsockname()[1]
    return host, port


def test_unreachable_builder_skips_checks_visibly(repo: Path, remote: Path) -> None:  # noqa: F811
    host, port = dead_address()
    run(repo, "checkout", "-q", "-b", "codex/ci/constrained")
    commit(repo, "c.txt", "ci: constrained push")
    run(repo, "config", "nixify.builder", f"ssh://root@{host}:{port}")
    run(repo, "config", "--add", "nixify.check", "exit 1")  # would refuse if it ran
    # Constrained as Nix itself reports it: max-jobs = 0, no nixify setting.
    proc = run(repo, "push", "origin", "codex/ci/constrained", NIX_CONFIG="max-jobs = 0")
    out = proc.stdout + proc.stderr
    assert "SKIPPED push-time checks (1)" in out
    assert "nix max-jobs = 0" in out
    assert f"builder ssh://root@{host}:{port} unreachable" in out
    assert "Connection refused" in out
    assert "leak scan of the pushed objects: clean" in proc.stderr  # still ran, locally
    assert run(remote, "rev-parse", "codex/ci/constrained").stdout.strip()


def test_unreachable_builder_never_skips_the_leak_scan(repo: Path, remote: Path) -> None:  # noqa: F811
    host, port = dead_address()
    run(repo, "checkout", "-q", "-b", "codex/ci/leak")
    key = "".join(["AGE-SECRET-KEY-1", "Q" * 58])
    commit(repo, "k.txt", "ci: key", content=key + "\n", no_verify=True)
    run(repo, "config", "nixify.builder", f"root@{host}:{port}")
    run(repo, "config", "--add", "nixify.check", "true")
    proc = run(repo, "push", "origin", "codex/ci/leak", ok=False, NIX_CONFIG="max-jobs = 0")
    assert proc.returncode != 0 and "age-identity" in proc.stderr
    assert "SKIPPED" not in proc.stdout + proc.stderr


def test_constrained_host_without_builder_refuses(repo: Path, remote: Path) -> None:  # noqa: F811
    run(repo, "checkout", "-q", "-b", "codex/ci/nobuilder")
    commit(repo, "c.txt", "ci: no builder")
    run(repo, "config", "--add", "nixify.check", "true")
    proc = run(repo, "push", "origin", "codex/ci/nobuilder", ok=False, NIX_CONFIG="max-jobs = 0")
    assert proc.returncode != 0
    assert "no builder is configured" in proc.stderr


def test_unconstrained_host_runs_checks_locally_per_nix(repo: Path, remote: Path) -> None:  # noqa: F811
    run(repo, "checkout", "-q", "-b", "codex/ci/local")
    commit(repo, "c.txt", "ci: local")
    run(repo, "config", "nixify.builder", "root@127.0.0.213:1")
    run(repo, "config", "--add", "nixify.check", "test -f c.txt")
    proc = run(repo, "push", "origin", "codex/ci/local", NIX_CONFIG="max-jobs = 2")
    assert "check (local" in proc.stderr and "SKIPPED" not in proc.stderr


def test_builder_spec_parsing() -> None:
    b = Builder.parse("ssh://root@127.0.0.21:2222", "-i /k -o UserKnownHostsFile=/kh")
    assert b.destination == "root@127.0.0.21"
    assert b.transport().ssh_argv("true")[-3:] == ["root@127.0.0.21", "--", "true"]
    assert b.ssh_args[4:6] == ("-p", "2222")
    assert "-i" in b.ssh_args and "/kh" in b.ssh_args[-1]
    assert Builder.parse("builder").destination == "builder"
