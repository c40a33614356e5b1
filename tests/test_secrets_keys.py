"""Identity lookup in the places sops looks, with real keys."""

from __future__ import annotations

from pathlib import Path

import pytest
from secrets_fixtures import age_keygen, ssh_keygen

from nixify.errors import ConfigError
from nixify.secrets.keys import find_identities
from nixify.secrets.ssh_to_age import recipient_of_public_line


def test_each_source_is_found(tmp_path: Path) -> None:
    env_key = age_keygen(tmp_path / "env.txt")
    file_key = age_keygen(tmp_path / "file.txt")
    default = age_keygen(tmp_path / "default.txt")
    ssh = ssh_keygen(tmp_path / "host")
    cmd_key = age_keygen(tmp_path / "cmd.txt")
    xdg = tmp_path / "xdg"
    (xdg / "sops" / "age").mkdir(parents=True)
    (xdg / "sops" / "age" / "keys.txt").write_text(default.identity_file.read_text())
    env = {
        "HOME": str(tmp_path),
        "XDG_CONFIG_HOME": str(xdg),
        "SOPS_AGE_KEY": env_key.identity_file.read_text(),
        "SOPS_AGE_KEY_FILE": str(file_key.identity_file),
        "SOPS_AGE_SSH_PRIVATE_KEY_FILE": str(ssh.private),
        "SOPS_AGE_KEY_CMD": f"cat {cmd_key.identity_file}",
    }
    found = find_identities(env)
    assert [i.recipient for i in found] == [
        env_key.recipient,
        file_key.recipient,
        cmd_key.recipient,
        recipient_of_public_line(ssh.public_line),
        default.recipient,
    ]
    assert [i.source for i in found][:2] == ["$SOPS_AGE_KEY", str(file_key.identity_file)]


def test_default_keys_file_under_home(tmp_path: Path) -> None:
    key = age_keygen(tmp_path / "k.txt")
    target = tmp_path / ".config" / "sops" / "age" / "keys.txt"
    target.parent.mkdir(parents=True)
    target.write_text(key.identity_file.read_text())
    assert [i.recipient for i in find_identities({"HOME": str(tmp_path)})] == [key.recipient]


def test_nothing_found_and_bad_files_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no age identity found"):
        find_identities({"HOME": str(tmp_path)})
    bad = tmp_path / "bad.txt"
    bad.write_text("# comment\nnot-a-key\n")
    with pytest.raises(ConfigError, match=rf"{bad}: line 2 is not an AGE-SECRET-KEY-1 identity"):
        find_identities({"HOME": str(tmp_path), "SOPS_AGE_KEY_FILE": str(bad)})
    with pytest.raises(ConfigError, match="cannot read identity file"):
        find_identities({"HOME": str(tmp_path), "SOPS_AGE_KEY_FILE": str(tmp_path / "missing")})
