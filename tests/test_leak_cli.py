"""`nixify leak-scan`: git-aware tree listing, allowlist, history mode, output and exit codes."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from test_leak_material import dotted

from nixify.cli import main
from nixify.leak.scanner import fingerprint

ADDR = dotted(192, 168, 7, 7)


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
    ).stdout


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    r = tmp_path / "repo"
    r.mkdir()
    git(r, "init", "-q", "-b", "main")
    git(r, "config", "user.name", "Test")
    git(r, "config", "user.email", "test@example.invalid")
    (r / "README.md").write_text("clean\n")
    git(r, "add", "README.md")
    git(r, "commit", "-qm", "docs: readme")
    return r


def scan(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, object]]:
    rc = main(["leak-scan", "--json", *args])
    return rc, json.loads(capsys.readouterr().out)


def test_git_tree_scans_tracked_and_untracked_but_not_ignored(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (repo / ".gitignore").write_text("/.venv/\n*.log\n")
    (repo / ".venv").mkdir()
    (repo / ".venv" / "x.py").write_text(f"a = '{ADDR}'\n")
    (repo / "run.log").write_text(ADDR)
    rc, doc = scan(capsys, str(repo))
    assert rc == 0 and doc["findings"] == []
    rc, doc = scan(capsys, str(repo / ".venv"))  # named explicitly: scanned
    assert rc == 1 and len(doc["findings"]) == 1  # type: ignore[arg-type]
    (repo / "new.nix").write_text(f'{{ a = "{ADDR}"; }}\n')  # untracked, not ignored
    rc, doc = scan(capsys, str(repo))
    assert rc == 1
    assert [(f["path"], f["line"], f["kind"]) for f in doc["findings"]] == [  # type: ignore[index, union-attr]
        (str(repo / "new.nix"), 1, "private-ipv4")
    ]


def test_outside_git_every_file_is_scanned(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "cfg").write_text(ADDR)
    rc, doc = scan(capsys, str(tmp_path))
    assert rc == 1 and len(doc["findings"]) == 1  # type: ignore[arg-type]


def test_human_output_redacts_and_exit_codes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = tmp_path / "hosts.md"
    f.write_text(f"one\nthe nas is at {ADDR}.\n")
    assert main(["leak-scan", str(tmp_path)]) == 1
    out, err = capsys.readouterr()
    assert f"{f}:2:15: private-ipv4:" in out
    assert ADDR not in out and ADDR not in err
    assert fingerprint(ADDR.encode()) in out
    assert main(["leak-scan", str(tmp_path / "missing")]) == 2
    assert "missing: no such file" in capsys.readouterr().err


def test_allowlist_entry_needs_a_reason_and_matches_by_fingerprint(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = dotted(10, 9, 9, 9)
    (repo / "docs").mkdir()
    (repo / "docs" / "example.md").write_text(f"example {ADDR}\nand {other}\n")
    fp = fingerprint(ADDR.encode())
    allow = repo / ".leak-allowlist"
    allow.write_text(f"docs/example.md private-ipv4 {fp}\n")
    assert main(["leak-scan", str(repo)]) == 2
    err = capsys.readouterr().err
    assert ".leak-allowlist:1:" in err and "reason is required" in err
    allow.write_text(f"# why\ndocs/*.md private-ipv4 {fp} the documented example address\n")
    rc, doc = scan(capsys, str(repo))
    assert rc == 1 and doc["allowed"] == 1
    assert [f["line"] for f in doc["findings"]] == [2]  # type: ignore[index, union-attr]
    allow.write_text("docs/* * * everything under docs\n")
    assert main(["leak-scan", str(repo)]) == 2
    assert "needs one exact path" in capsys.readouterr().err
    allow.write_text("docs/example.md private-ipv4 * two documented example addresses\n")
    rc, doc = scan(capsys, str(repo))
    assert rc == 0 and doc["allowed"] == 2


def test_unused_allowlist_entry_is_reported(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (repo / ".leak-allowlist").write_text("gone.md * 0123456789ab file was deleted long ago\n")
    assert main(["leak-scan", str(repo)]) == 0
    assert ".leak-allowlist:1: entry matched nothing" in capsys.readouterr().err


def test_history_finds_a_key_committed_then_deleted(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(repo / "id_host")],
        check=True,
        capture_output=True,
    )
    git(repo, "add", "id_host", "id_host.pub")
    git(repo, "commit", "-qm", "feat: oops")
    added = git(repo, "rev-parse", "--short", "HEAD").strip()
    git(repo, "rm", "-q", "id_host", "id_host.pub")
    git(repo, "commit", "-qm", "fix: remove key")
    rc, doc = scan(capsys, str(repo))
    assert rc == 0 and doc["findings"] == []
    rc, doc = scan(capsys, "--history", str(repo))
    assert rc == 1
    got = {(f["commit"], f["path"], f["line"], f["kind"]) for f in doc["findings"]}  # type: ignore[union-attr]
    assert (added, "id_host", 1, "private-key") in got
    assert (added, "id_host.pub", 1, "ssh-public-key") in got
    assert main(["leak-scan", "--history", str(repo)]) == 1
    assert f"{added}:id_host:1:1: private-key:" in capsys.readouterr().out


def test_history_sees_amended_away_commits_through_the_reflog(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (repo / "hosts.nix").write_text(f'"{ADDR}"\n')
    git(repo, "add", "hosts.nix")
    git(repo, "commit", "-qm", "feat: hosts")
    (repo / "hosts.nix").write_text('"nas"\n')
    git(repo, "commit", "-qa", "--amend", "-m", "feat: hosts by role")
    rc, doc = scan(capsys, "--history", str(repo))
    assert rc == 1
    [f] = doc["findings"]  # type: ignore[misc]
    assert f["path"] == "hosts.nix"
    assert f["commit"] != git(repo, "rev-parse", "--short", "HEAD").strip()  # the amended-away one


def test_history_outside_git_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["leak-scan", "--history", str(tmp_path)]) == 2
    assert "needs a git repository" in capsys.readouterr().err


def test_explicit_allowlist_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "a.md").write_text(f"{ADDR}\n")
    allow = tmp_path / "elsewhere.allow"
    allow.write_text(f"tree/a.md * {fingerprint(ADDR.encode())} example in a fixture\n")
    rc, doc = scan(capsys, "--allowlist", str(allow), str(tree))
    assert rc == 0 and doc["allowed"] == 1
    assert main(["leak-scan", "--allowlist", str(tmp_path / "nope"), str(tree)]) == 2
    assert "allowlist not found" in capsys.readouterr().err
