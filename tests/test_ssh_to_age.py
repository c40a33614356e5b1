"""ssh -> age conversion against Debian's age CLI, both directions."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from secrets_fixtures import age_keygen, ssh_keygen

from nixify.errors import ConfigError
from nixify.secrets import bech32
from nixify.secrets.cli import main_ssh_to_age
from nixify.secrets.ssh_to_age import (
    age_recipients_from_text,
    private_key_to_age_identity,
    recipient_of_public_line,
)


def test_bech32_roundtrip_and_checksum() -> None:
    data = bytes(range(32))
    text = bech32.encode("age", data)
    assert bech32.decode(text) == ("age", data)
    broken = text[:-1] + ("q" if text[-1] != "q" else "p")
    with pytest.raises(bech32.Bech32Error):
        bech32.decode(broken)


def test_derived_identity_matches_derived_recipient_by_age_keygen(tmp_path: Path) -> None:
    key = ssh_keygen(tmp_path / "host")
    identity = private_key_to_age_identity(key.private.read_bytes())
    assert identity.startswith("AGE-SECRET-KEY-1")
    (tmp_path / "id.txt").write_text(identity + "\n")
    from_age = subprocess.run(
        ["age-keygen", "-y", str(tmp_path / "id.txt")], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert age_recipients_from_text(key.public_line) == [from_age]


def test_age_cli_encrypts_to_derived_recipient_and_decrypts_with_derived_identity(
    tmp_path: Path,
) -> None:
    key = ssh_keygen(tmp_path / "host")
    recipient = recipient_of_public_line(key.public_line)
    (tmp_path / "id.txt").write_text(private_key_to_age_identity(key.private.read_bytes()))
    sealed = subprocess.run(
        ["age", "-r", recipient], input=b"hello host", capture_output=True, check=True
    ).stdout
    opened = subprocess.run(
        ["age", "-d", "-i", str(tmp_path / "id.txt")], input=sealed, capture_output=True
    )
    assert opened.returncode == 0, opened.stderr
    assert opened.stdout == b"hello host"
    # and a different host's identity does not open it
    other = ssh_keygen(tmp_path / "other")
    (tmp_path / "other.txt").write_text(private_key_to_age_identity(other.private.read_bytes()))
    refused = subprocess.run(
        ["age", "-d", "-i", str(tmp_path / "other.txt")], input=sealed, capture_output=True
    )
    assert refused.returncode != 0


def test_pyrage_encrypt_to_recipient_age_cli_identity_direction(tmp_path: Path) -> None:
    # vice versa: age-keygen makes the identity, nixify's pyrage path encrypts to it
    import pyrage

    ak = age_keygen(tmp_path / "op.txt")
    sealed = pyrage.encrypt(b"payload", [pyrage.x25519.Recipient.from_str(ak.recipient)])
    out = subprocess.run(
        ["age", "-d", "-i", str(ak.identity_file)], input=sealed, capture_output=True, check=True
    )
    assert out.stdout == b"payload"


def test_keyscan_and_authorized_keys_lines_skip_non_ed25519(tmp_path: Path) -> None:
    ed = ssh_keygen(tmp_path / "ed")
    rsa = ssh_keygen(tmp_path / "rsa", kind="rsa")
    ed2 = ssh_keygen(tmp_path / "ed2")
    text = "\n".join(
        [
            "# 127.0.0.1:22 SSH-2.0-OpenSSH",
            "127.0.0.1 " + rsa.public_line,
            "127.0.0.1 " + ed.public_line,
            'from="10.0.0.1",no-pty ' + ed2.public_line,
            "",
        ]
    )
    got = age_recipients_from_text(text)
    assert got == [
        recipient_of_public_line(ed.public_line),
        recipient_of_public_line(ed2.public_line),
    ]


def test_rsa_host_key_is_a_clear_error(tmp_path: Path) -> None:
    rsa = ssh_keygen(tmp_path / "rsa", kind="rsa")
    with pytest.raises(ConfigError, match=r"nas: host key is not ssh-ed25519 \('ssh-rsa'\)"):
        recipient_of_public_line(rsa.public_line, where="nas")
    with pytest.raises(ConfigError, match="not an ed25519 key"):
        private_key_to_age_identity(rsa.private.read_bytes(), where=str(rsa.private))


def test_passphrase_protected_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = ssh_keygen(tmp_path / "locked", passphrase="hunter22")
    monkeypatch.delenv("SSH_TO_AGE_PASSPHRASE", raising=False)
    with pytest.raises(ConfigError, match="passphrase-protected"):
        private_key_to_age_identity(key.private.read_bytes(), where="locked")
    with pytest.raises(ConfigError, match="cannot read OpenSSH private key"):
        private_key_to_age_identity(key.private.read_bytes(), passphrase=b"wrong")
    monkeypatch.setenv("SSH_TO_AGE_PASSPHRASE", "hunter22")
    identity = private_key_to_age_identity(key.private.read_bytes())
    (tmp_path / "id.txt").write_text(identity)
    from_age = subprocess.run(
        ["age-keygen", "-y", str(tmp_path / "id.txt")], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert from_age == recipient_of_public_line(key.public_line)


def test_cli_stdin_file_and_private(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import io

    key = ssh_keygen(tmp_path / "host")
    monkeypatch.setattr("sys.stdin", io.StringIO(key.public_line + "\n"))
    assert main_ssh_to_age([]) == 0
    assert capsys.readouterr().out == recipient_of_public_line(key.public_line) + "\n"
    assert main_ssh_to_age(["-i", str(key.private), "--private-key"]) == 0
    assert capsys.readouterr().out == private_key_to_age_identity(key.private.read_bytes()) + "\n"
    locked = ssh_keygen(tmp_path / "locked", passphrase="pw123456")
    monkeypatch.delenv("SSH_TO_AGE_PASSPHRASE", raising=False)
    proc = subprocess.run(
        [str(Path(__file__).parents[1] / ".venv/bin/nixify"), "ssh-to-age", "--private-key",
         "-i", str(locked.private)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "passphrase-protected" in proc.stderr and "Traceback" not in proc.stderr
