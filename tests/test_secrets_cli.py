"""`nixify secrets ...` end to end on a temporary secrets tree (real keys, real sops)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from secrets_fixtures import sops, ssh_keygen

from nixify.cli import main as nixify_main
from nixify.lab.secrets import HostKeyAndMounts, provision_lab_secrets
from nixify.secrets.audit import stale_mounts
from nixify.secrets.recipients import RECORD_NAME
from nixify.secrets.sopsfile import SopsFile
from nixify.secrets.ssh_to_age import recipient_of_public_line


@pytest.fixture
def tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    keys = {n: ssh_keygen(tmp_path / n) for n in ("nas", "dev", "builder")}
    mounts = {"nas": ["common/ntp.yaml", "nas/smb.yaml"], "dev": ["common/ntp.yaml"], "builder": []}
    secrets = tmp_path / "secrets"
    provision_lab_secrets(
        secrets,
        {n: HostKeyAndMounts(k.public_line, mounts[n]) for n, k in keys.items()},
        tmp_path / "op.txt",
    )
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


def test_decrypt_prints_what_sops_prints(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tree / "nas" / "smb.yaml"
    rc, out, _ = run(capsys, "secrets", "decrypt", str(f))
    assert rc == 0
    assert out.encode() == sops(["decrypt", str(f)], tree.parent, tree.parent / "op.txt").stdout


def test_mount_change_rules_check_rekey_audit(
    tree: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(capsys, "secrets", "rules", "--check", "--secrets-dir", str(tree))[0] == 0
    assert run(capsys, "secrets", "audit", "--secrets-dir", str(tree))[0] == 0
    # dev now mounts nas/smb.yaml too
    (tree / "mounts.yaml").write_text(
        "nas: [common/ntp.yaml, nas/smb.yaml]\ndev: [common/ntp.yaml, nas/smb.yaml]\nbuilder: []\n"
    )
    rc, out, _ = run(capsys, "secrets", "rules", "--check", "--secrets-dir", str(tree))
    assert rc == 1 and "out of date" in out
    assert run(capsys, "secrets", "rules", "--secrets-dir", str(tree))[0] == 0
    rc, out, _ = run(capsys, "secrets", "check", "--secrets-dir", str(tree))
    assert rc == 1
    assert "nas/smb.yaml: lacks recipient dev that its rule names" in out
    assert "needs rekey: nas/smb.yaml" in out
    rc, out, _ = run(capsys, "secrets", "rekey", "--dry-run", str(tree))
    assert rc == 0 and "would rekey nas/smb.yaml: +dev" in out
    rc, out, _ = run(capsys, "secrets", "rekey", "--dry-run", "--json", str(tree))
    files = {f["path"]: f for f in json.loads(out)["files"]}
    assert files["nas/smb.yaml"]["status"] == "would-rekey"
    assert files["nas/smb.yaml"]["added"] == ["dev"] and files["common/ntp.yaml"]["added"] == []
    rc, out, _ = run(capsys, "secrets", "rekey", str(tree))
    assert rc == 0 and "rekeyed nas/smb.yaml: +dev" in out and "1 rekeyed, 1 unchanged" in out
    rc, out, _ = run(capsys, "secrets", "audit", "--json", "--secrets-dir", str(tree))
    doc = json.loads(out)
    assert rc == 0 and doc["ok"]
    assert doc["matrix"]["dev"] == {"common/ntp.yaml": True, "nas/smb.yaml": True}
    assert doc["matrix"]["builder"] == {"common/ntp.yaml": False, "nas/smb.yaml": False}
    assert run(capsys, "secrets", "check", "--secrets-dir", str(tree))[0] == 0


def test_rebuilt_host_is_reported_and_fixed_by_a_rekey(
    tree: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tmp = tree.parent
    (tmp / "nas").unlink()
    (tmp / "nas.pub").unlink()
    rebuilt = ssh_keygen(tmp / "nas")
    rc, out, _ = run(
        capsys, "secrets", "collect", "--secrets-dir", str(tree), "--host", f"nas={rebuilt.public}"
    )
    assert rc == 0 and "nas: host key changed" in out
    rc, out, _ = run(capsys, "secrets", "check", "--secrets-dir", str(tree))
    assert rc == 1
    # one line for the host, not one per file (and not the rules either)
    nas_lines = [ln for ln in out.splitlines() if "nas" in ln and "recipients.yaml" not in ln]
    assert nas_lines == [
        "nas: host key changed since its secrets were keyed: 2 of its 2 files to rekey: "
        "run `nixify secrets rotate-host nas`"
    ], out
    assert "out of date" not in out
    new_rcpt = recipient_of_public_line(rebuilt.public_line)
    nas_mounts = ["common/ntp.yaml", "nas/smb.yaml"]
    assert stale_mounts(tree, "nas", new_rcpt, nas_mounts) == nas_mounts  # what the deploy asks
    assert run(capsys, "secrets", "rules", "--secrets-dir", str(tree))[0] == 0
    rc, out, _ = run(capsys, "secrets", "rekey", str(tree))
    assert rc == 0 and "rekeyed nas/smb.yaml: +nas -nas (old key)" in out
    assert stale_mounts(tree, "nas", new_rcpt, nas_mounts) == []
    assert run(capsys, "secrets", "check", "--secrets-dir", str(tree))[0] == 0
    # the rebuilt host's derived identity decrypts with the real sops binary
    ident = tmp / "nas.agekey"
    rc, out, _ = run(capsys, "ssh-to-age", "--private-key", "-i", str(rebuilt.private))
    ident.write_text(out)
    assert sops(["decrypt", str(tree / "nas/smb.yaml")], tmp, ident).returncode == 0


def test_bad_host_key_and_no_identity(
    tree: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    tmp = tree.parent
    rsa = ssh_keygen(tmp / "rsa", kind="rsa")
    record_before = (tree / RECORD_NAME).read_bytes()
    rc, _, err = run(
        capsys, "secrets", "collect", "--secrets-dir", str(tree), "--host", f"nas={rsa.public}"
    )
    assert rc == 2
    assert "nas: host key is not ssh-ed25519 ('ssh-rsa')" in err and "Traceback" not in err
    assert (tree / RECORD_NAME).read_bytes() == record_before
    monkeypatch.delenv("SOPS_AGE_KEY_FILE")
    before = (tree / "nas/smb.yaml").read_bytes()
    rc, _, err = run(capsys, "secrets", "rotate", str(tree / "nas/smb.yaml"))
    assert rc == 2 and "no age identity found" in err
    assert (tree / "nas/smb.yaml").read_bytes() == before
    assert SopsFile.load(tree / "nas/smb.yaml").recipients


def test_unmounted_file_gets_an_operator_only_rule(
    tree: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from nixify.secrets.sopsfile import encrypt_tree
    from nixify.secrets.yamlio import load

    op = SopsFile.load(tree / "common/ntp.yaml").recipients[0]
    (tree / "addresses.sops.yaml").write_text(encrypt_tree(load("nas-1: x\n"), "yaml", [op]))
    rc, out, _ = run(capsys, "secrets", "check", "--secrets-dir", str(tree))
    assert rc == 1 and "out of date" in out
    assert run(capsys, "secrets", "rules", "--secrets-dir", str(tree))[0] == 0
    assert "addresses.sops.yaml: operator only" in (tree / ".sops.yaml").read_text()
    rc, out, _ = run(capsys, "secrets", "rekey", str(tree))
    assert rc == 0 and "3 unchanged" in out
    assert run(capsys, "secrets", "check", "--secrets-dir", str(tree))[0] == 0


def _corrupt(path: Path) -> None:
    """A file sops itself refuses ('MAC mismatch'/'cannot decrypt MAC'), structure intact."""
    text = path.read_text()
    new = re.sub(
        r'(?m)^    lastmodified: "[^"]+"$', '    lastmodified: "2001-01-01T00:00:00Z"', text
    )
    assert new != text
    path.write_text(new)


def test_check_and_rekey_name_a_corrupt_file(
    tree: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = tree / "nas" / "smb.yaml"
    _corrupt(f)
    assert sops(["decrypt", str(f)], tree.parent, tree.parent / "op.txt", check=False).returncode
    rc, out, _ = run(capsys, "secrets", "check", "--secrets-dir", str(tree))
    assert rc == 1
    assert f"{f}: sops:mac: cannot decrypt" in out
    assert "common/ntp.yaml" not in out
    before = f.read_bytes()
    rc, out, err = run(capsys, "secrets", "rekey", str(tree))
    assert rc == 1
    assert "error nas/smb.yaml:" in err and f"{f}: sops:mac" in err
    assert "1 errors" in out
    assert f.read_bytes() == before


def test_check_names_a_malformed_file_without_any_identity(
    tree: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    f = tree / "common" / "ntp.yaml"
    text = f.read_text()
    first = next(line for line in text.splitlines() if not line.startswith("#"))
    f.write_text(text.replace("\nsops:\n", f"\n{first}\nsops:\n", 1))  # a key given twice
    monkeypatch.delenv("SOPS_AGE_KEY_FILE")
    rc, out, _ = run(capsys, "secrets", "check", "--secrets-dir", str(tree))
    assert rc == 1
    key = first.split(":")[0]
    assert f"{f}: {key}: key given twice" in out
    assert "note: values and MACs not verified" in out


def test_check_refuses_a_declared_secret_that_does_not_exist(
    tree: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hosts = tree.parent / "hosts.yaml"
    hosts.write_text(
        "roles: {}\nhosts:\n"
        "  - {name: nas, role: nas, secrets: [nas/smb.yaml, nas/restic.yaml]}\n"
    )
    rc, out, err = run(
        capsys, "secrets", "check", "--secrets-dir", str(tree), "--inventory", str(hosts)
    )
    assert rc == 1, err
    assert (
        f"{hosts}: host 'nas': field 'secrets': secret 'nas/restic.yaml': "
        f"no such file {tree / 'nas/restic.yaml'}"
    ) in out
    assert "'nas/smb.yaml'" not in out


def test_inventory_validation_with_a_secrets_dir_refuses_a_missing_file(tree: Path) -> None:
    from pydantic import ValidationError

    from nixify.inventory.model import HostData, check_secret_files

    entry = {"name": "nas-1", "role": "nas", "secrets": ["nas/smb.yaml", "nas/gone.yaml"]}
    with pytest.raises(ValidationError, match=r"secret 'nas/gone.yaml': no such file .*gone"):
        HostData.model_validate(entry, context={"secrets_dir": tree})
    host = HostData.model_validate(entry)  # no secrets directory known: paths only
    assert check_secret_files([host], tree, "hosts.yaml") == [
        f"hosts.yaml: host 'nas-1': field 'secrets': secret 'nas/gone.yaml': "
        f"no such file {tree / 'nas/gone.yaml'}"
    ]
