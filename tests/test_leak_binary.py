"""The leak gate reads every byte: binary files, UTF-16 text, large files and blobs.

Issue 17: a file with a NUL byte in its first 8 KiB was skipped, at commit and
at push. Each leak here sits behind a NUL byte (or in random binary data, or
in UTF-16) and is looked for in every placement: the working tree, the staged
blobs a commit records, and the blobs a push publishes (history mode, with the
rev range the pre-push gate uses).
"""

from __future__ import annotations

import json
import random
import subprocess
from pathlib import Path

import pytest
from test_leak_material import Leak, make_leaks

from nixify.cli import main
from nixify.leak import scanner
from nixify.leak.history import scan_history, scan_staged
from nixify.leak.scanner import Finding, fingerprint, scan_bytes, scan_file, scan_paths

# The leaks issue 17 names, and one of each kind added with it.
NAMES = (
    "age-identity",
    "private-openssh",
    "private-rsa-pem",
    "rfc1918-192",
    "ula-v6",
    "link-local-v6",
    "nix-cache-secret",
    "wireguard-conf",
)


@pytest.fixture(scope="module")
def leaks(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Leak]:
    return {leak.name: leak for leak in make_leaks(tmp_path_factory.mktemp("keys"))}


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


def behind_nul(leak: Leak) -> bytes:
    """One NUL byte, then the leak on line 2."""
    return b"\0\n" + leak.text.encode() + b"\n"


def in_binary(leak: Leak) -> bytes:
    """The leak past the old 8 KiB sniff, between runs of random bytes (in a PNG)."""
    rng = random.Random(leak.name)
    noise = bytes(b for b in rng.randbytes(12000) if b != 0x0A)
    return (
        b"\x89PNG\r\n\x1a\0\0\0\rIHDR" + noise[:9000] + b"\0\n"
        + leak.text.encode() + b"\n" + noise[9000:]
    )


def kinds_lines(findings: list[Finding]) -> set[tuple[str, int]]:
    return {(f.kind, f.line) for f in findings}


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("shape", [behind_nul, in_binary])
def test_binary_file_leak_found_in_tree_staged_and_pushed(
    name: str, shape: object, leaks: dict[str, Leak], repo: Path, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    leak = leaks[name]
    content = shape(leak)  # type: ignore[operator]
    assert b"\0" in content[:8192]
    line = content[: content.index(leak.text.encode())].count(b"\n") + 1
    want = (leak.kind, line)
    blob = repo / "blob.bin"
    blob.write_bytes(content)

    # Working tree: the scanner and the command (untracked, not ignored).
    assert want in kinds_lines(scan_paths([repo]))
    assert main(["leak-scan", "--json", str(repo)]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert [(f["path"], f["kind"]) for f in doc["findings"]] == [(str(blob), leak.kind)]

    # Commit: the staged blob, even once the working file is cleaned up.
    git(repo, "add", "blob.bin")
    blob.write_bytes(b"\0clean\n")
    assert scan_paths([repo]) == []
    staged = scan_staged(repo)
    assert want in kinds_lines(staged) and {f.path for f in staged} == {"blob.bin"}

    # Push: every new blob of the pushed commits, as the pre-push gate asks for them.
    remote = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", str(remote))
    git(repo, "remote", "add", "origin", str(remote))
    git(repo, "push", "-q", "origin", "main")
    git(repo, "checkout", "-q", "-b", "claude/feat/blob")
    git(repo, "commit", "-qm", "feat: a blob")
    added = git(repo, "rev-parse", "--short", "HEAD").strip()
    git(repo, "rm", "-qf", "blob.bin")
    git(repo, "commit", "-qm", "fix: drop the blob")
    tip = git(repo, "rev-parse", "HEAD").strip()
    pushed = scan_history(repo, (tip, "--not", "--remotes=origin"))
    assert {(f.commit, f.path, f.kind, f.line) for f in pushed} >= {(added, "blob.bin", *want)}
    assert main(["leak-scan", "--history", str(repo)]) == 1
    out = capsys.readouterr().out
    assert f"{added}:blob.bin:{line}:" in out and leak.kind in out
    assert leak.inline not in out


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be"])
def test_utf16_text_is_decoded_and_scanned(
    encoding: str, leaks: dict[str, Leak], tmp_path: Path
) -> None:
    chosen = [leaks[n] for n in NAMES]
    text = "".join(f"# {leak.name}\r\n{leak.text}\r\n" for leak in chosen)
    data = text.encode(encoding)
    found = scan_bytes(data, "keys.txt")
    utf8 = scan_bytes(text.encode(), "keys.txt")
    # Same kinds, same fingerprints (an allowlist entry holds for both encodings),
    # same lines; and the value is never printed.
    assert [(f.kind, f.fingerprint, f.line) for f in found] == [
        (f.kind, f.fingerprint, f.line) for f in utf8
    ]
    assert {f.kind for f in found} == {leak.kind for leak in chosen}
    rendered = "\n".join(f.render() for f in found)
    for leak in chosen:
        assert leak.inline not in rendered
    # In a file, in a tree: found the same way.
    (tmp_path / "windows.txt").write_bytes(data)
    assert {f.kind for f in scan_paths([tmp_path])} == {leak.kind for leak in chosen}


def test_utf16_inside_binary_data_at_an_odd_offset(leaks: dict[str, Leak]) -> None:
    leak = leaks["age-identity"]
    data = b"\x7fELF\0\1\2" + leak.text.encode("utf-16-le") + b"\0\0\xff"
    [f] = scan_bytes(data, "tool.exe")
    assert f.kind == "age-identity" and f.column == 8
    assert f.fingerprint == fingerprint(leak.text.encode())


def test_clean_binary_data_has_no_findings() -> None:
    rng = random.Random(1717)
    data = rng.randbytes(4 << 20) + bytes(1 << 16)
    data += "plain words, a version 1.10.2 and 8.8.8.8\n".encode("utf-16-le")
    assert scan_bytes(data, "random.bin") == []


def _spread(leaks: dict[str, Leak], size: int) -> bytes:
    """About ``size`` bytes of text and binary noise with leaks at irregular offsets."""
    rng = random.Random(size)
    chosen = [leaks[n] for n in NAMES]
    parts: list[bytes] = []
    total = 0
    i = 0
    while total < size:
        pad = rng.choice([b"x", b"\0", b"word "]) * rng.randint(0, 700)
        leak = chosen[i % len(chosen)]
        body = leak.text.encode("utf-16-le") if i % 5 == 4 else leak.text.encode()
        part = pad + b"\n" + body + b"\n"
        parts.append(part)
        total += len(part)
        i += 1
    return b"".join(parts)


@pytest.mark.parametrize("window", [1024, 3000, 4096])
def test_large_files_are_read_in_windows_and_nothing_is_lost(
    window: int, leaks: dict[str, Leak], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = _spread(leaks, 200_000)
    whole = scan_bytes(data, str(tmp_path / "big.bin"))
    assert len(whole) > 100
    monkeypatch.setattr(scanner, "WINDOW", window)
    monkeypatch.setattr(scanner, "OVERLAP", 512)
    monkeypatch.setattr(scanner, "LEAD", 256)
    (tmp_path / "big.bin").write_bytes(data)
    assert scan_file(str(tmp_path / "big.bin")) == whole


def test_large_blob_in_history_is_read_to_its_end(
    leaks: dict[str, Leak], repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(scanner, "WINDOW", 4096)
    monkeypatch.setattr(scanner, "OVERLAP", 512)
    leak = leaks["private-openssh"]
    (repo / "disk.img").write_bytes(bytes(100_000) + b"\n" + leak.text.encode() + b"\n")
    (repo / "small.bin").write_bytes(b"\0" + leaks["age-identity"].text.encode())
    git(repo, "add", "disk.img", "small.bin")
    assert {(f.path, f.kind) for f in scan_staged(repo)} == {
        ("disk.img", "private-key"), ("small.bin", "age-identity")
    }
    git(repo, "commit", "-qm", "feat: images")
    got = {(f.path, f.kind, f.line) for f in scan_history(repo)}
    assert got == {("disk.img", "private-key", 2), ("small.bin", "age-identity", 1)}


def test_staged_scan_sees_only_what_the_commit_adds(
    leaks: dict[str, Leak], repo: Path
) -> None:
    key = leaks["nix-cache-secret"].text
    (repo / "old.txt").write_text(key + "\n")
    git(repo, "add", "old.txt")
    git(repo, "commit", "-qm", "feat: old")
    assert scan_staged(repo) == []  # already in HEAD: the push gate's business
    (repo / "new.nix").write_text(f'{{ key = "{key}"; }}\n')
    git(repo, "add", "new.nix")
    assert [(f.path, f.kind, f.line) for f in scan_staged(repo)] == [
        ("new.nix", "nix-cache-secret-key", 1)
    ]


def test_staged_scan_of_a_first_commit(leaks: dict[str, Leak], tmp_path: Path) -> None:
    r = tmp_path / "fresh"
    r.mkdir()
    git(r, "init", "-q", "-b", "main")
    (r / "wg0.conf").write_text("[Interface]\n" + leaks["wireguard-conf"].text + "\n")
    git(r, "add", "wg0.conf")
    assert [(f.kind, f.line) for f in scan_staged(r)] == [("wireguard-private-key", 2)]
