"""`nixify secrets add` and `edit`: encrypted to the rule's recipients, plaintext only
from stdin or in a private 0600 file on a memory file system, removed after."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest
from secrets_fixtures import sops, ssh_keygen

from nixify.cli import main as nixify_main
from nixify.lab.secrets import HostKeyAndMounts, provision_lab_secrets
from nixify.secrets.keys import find_identities
from nixify.secrets.sopsfile import SopsFile

HOSTS_YAML = """\
roles:
  nas: {secrets: [common/ntp.yaml]}
hosts:
  - {name: nas-1, role: nas, secrets: [nas/smb.yaml]}
  - {name: nas-2, role: nas}
  - {name: dev-1, role: wsl_dev, max_jobs: 0}
"""
PLAIN = "password: hunter2-very-secret\n"


@pytest.fixture
def tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    keys = {n: ssh_keygen(tmp_path / n) for n in ("nas-1", "nas-2", "dev-1")}
    mounts = {"nas-1": ["common/ntp.yaml", "nas/smb.yaml"], "nas-2": ["common/ntp.yaml"],
              "dev-1": []}
    secrets = tmp_path / "secrets"
    provision_lab_secrets(
        secrets,
        {n: HostKeyAndMounts(k.public_line, mounts[n]) for n, k in keys.items()},
        tmp_path / "op.txt",
    )
    (secrets / "mounts.yaml").unlink()
    (tmp_path / "inventories").mkdir()
    (tmp_path / "inventories" / "hosts.yaml").write_text(HOSTS_YAML)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.delenv("SOPS_AGE_KEY", raising=False)
    monkeypatch.setenv("SOPS_AGE_KEY_FILE", str(tmp_path / "op.txt"))
    monkeypatch.chdir(tmp_path)
    return secrets


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = nixify_main(list(argv))
    out = capsys.readouterr()
    return rc, out.out, out.err


def labels(tree: Path, path: Path) -> set[str]:
    from nixify.secrets.recipients import RECORD_NAME, RecipientsRecord

    record = RecipientsRecord.load(tree / RECORD_NAME)
    return {record.label(r) for r in SopsFile.load(path).recipients}


def no_plaintext_under(root: Path) -> None:
    for p in root.rglob("*"):
        if p.is_file() and p.name != "editor.sh":  # the test's own editor holds the text
            assert b"hunter2" not in p.read_bytes(), p


def test_add_from_stdin_encrypts_to_the_role_s_hosts_and_the_operator(
    tree: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import io

    monkeypatch.setattr(sys, "stdin", io.StringIO(PLAIN))
    target = tree / "nas" / "backup.yaml"
    rc, out, err = run(capsys, "secrets", "add", str(target), "-", "--for", "nas")
    assert rc == 0, err
    assert "encrypted to the operator and 2 host(s): nas-1 nas-2" in out
    assert "note: declare nas/backup.yaml in the `secrets` of nas-1 nas-2" in out
    assert labels(tree, target) == {"operator:operator", "nas-1", "nas-2"}
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    # the real sops opens it
    got = sops(["decrypt", str(target)], tree.parent, tree.parent / "op.txt").stdout
    assert got.decode() == PLAIN
    no_plaintext_under(tree.parent)
    # a host declared in the fleet keeps its file's readers: nas-1 mounts nas/smb.yaml
    rc, _, err = run(capsys, "secrets", "add", str(tree / "nas" / "smb.yaml"), "-",
                     "--for", "dev-1")
    assert rc == 2 and "exists; change it with `nixify secrets edit" in err


def test_add_names_an_unknown_role(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = run(capsys, "secrets", "add", str(tree / "x.yaml"), "-", "--for", "nope")
    assert rc == 2 and "--for nope: no such role or host in inventories/hosts.yaml" in err
    rc, _, err = run(capsys, "secrets", "add", "/tmp/elsewhere.yaml", "-", "--for", "nas")
    assert rc == 2 and "not inside the secrets directory" in err


def test_edit_uses_a_private_file_and_keeps_recipients_and_data_key(
    tree: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    target = tree / "nas" / "smb.yaml"
    before = SopsFile.load(target)
    ids = [i.identity for i in find_identities()]
    seen = tmp_path / "seen"
    editor = tmp_path / "editor.sh"
    editor.write_text(
        "#!/bin/sh\n"
        f'stat -c "%a %n" "$1" "$(dirname "$1")" > {seen}\n'
        'printf "backup: hunter2-very-secret\\n" >> "$1"\n'
    )
    editor.chmod(0o755)
    monkeypatch.setenv("EDITOR", str(editor))
    monkeypatch.delenv("VISUAL", raising=False)
    rc, out, err = run(capsys, "secrets", "edit", str(target))
    assert rc == 0, err
    assert "re-encrypted (same recipients, same data key)" in out
    file_mode, dir_mode = seen.read_text().splitlines()
    assert file_mode.startswith("600 /dev/shm/nixify-secret-")
    assert dir_mode.startswith("700 /dev/shm/nixify-secret-")
    assert not Path(file_mode.split()[1]).parent.exists()  # removed after
    after = SopsFile.load(target)
    assert after.recipients == before.recipients
    assert after.data_key(ids) == before.data_key(ids)
    assert after.plaintext(ids) == before.plaintext(ids) + "backup: hunter2-very-secret\n"
    no_plaintext_under(tmp_path)


def test_edit_without_a_change_leaves_the_file_and_reads_stdin(
    tree: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import io

    target = tree / "common" / "ntp.yaml"
    ids = [i.identity for i in find_identities()]
    old = target.read_bytes()
    monkeypatch.setenv("EDITOR", "true")
    rc, out, _ = run(capsys, "secrets", "edit", str(target))
    assert rc == 0 and "unchanged" in out and target.read_bytes() == old
    monkeypatch.setattr(sys, "stdin", io.StringIO(PLAIN))
    rc, out, _ = run(capsys, "secrets", "edit", str(target), "-")
    assert rc == 0 and SopsFile.load(target).plaintext(ids) == PLAIN
    assert os.stat(target).st_size > 0
