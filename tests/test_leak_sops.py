"""Sops metadata recipients are allowed by rule; nothing else in those files is."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from test_leak_material import dotted

from nixify.leak.scanner import scan_paths

SOPS = str(Path(sys.executable).with_name("sops"))


def age_pair() -> tuple[str, str]:
    ident = subprocess.run(["age-keygen"], check=True, capture_output=True, text=True).stdout
    recipient = subprocess.run(
        ["age-keygen", "-y"], input=ident, check=True, capture_output=True, text=True
    ).stdout.strip()
    secret = next(line for line in ident.splitlines() if not line.startswith("#"))
    return recipient, secret


@pytest.fixture(scope="module")
def keys() -> list[tuple[str, str]]:
    return [age_pair(), age_pair(), age_pair()]


def sops_encrypt(src: Path, recipients: list[str], out: Path) -> Path:
    proc = subprocess.run(
        [SOPS, "--encrypt", "--age", ",".join(recipients), str(src)],
        capture_output=True,
        check=True,
    )
    out.write_bytes(proc.stdout)
    return out


@pytest.mark.parametrize("suffix", ["yaml", "json", "env", "ini"])
def test_real_sops_file_is_clean(
    suffix: str, keys: list[tuple[str, str]], tmp_path: Path
) -> None:
    src = tmp_path / f"plain.{suffix}"
    src.write_text(
        {"yaml": "db:\n  password: hunter2\n", "json": '{"db": {"password": "x"}}',
         "env": "PASSWORD=x\n", "ini": "[db]\npassword = x\n"}[suffix]
    )
    out = sops_encrypt(src, [k[0] for k in keys[:2]], tmp_path / f"secret.{suffix}")
    src.unlink()
    text = out.read_text()
    assert keys[0][0] in text and keys[1][0] in text  # the recipients really are in there
    assert scan_paths([tmp_path]) == []


def test_sops_file_with_identity_or_ssh_blob_or_foreign_recipient_is_caught(
    keys: list[tuple[str, str]], tmp_path: Path
) -> None:
    src = tmp_path / "plain.yaml"
    src.write_text("a: 1\n")
    out = sops_encrypt(src, [keys[0][0]], tmp_path / "secret.yaml")
    src.unlink()
    lines = out.read_text().splitlines()
    at = next(i for i, line in enumerate(lines) if "recipient:" in line)
    blob = subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "k")],
        capture_output=True,
    )
    assert blob.returncode == 0
    pub = (tmp_path / "k.pub").read_text().split()[1]
    (tmp_path / "k").unlink()
    (tmp_path / "k.pub").unlink()
    # Inside the sops block: an identity, an SSH blob, a recipient on a line
    # that is not a `recipient:` entry.
    lines.insert(at + 1, f"          identity: {keys[1][1]}")
    lines.insert(at + 1, f"          hostkey: {pub}")
    lines.insert(at + 1, f"          note: {keys[2][0]}")
    # Outside it: a recipient among the data, even one that is in the list.
    lines.insert(0, f"owner: {keys[0][0]}")
    lines.insert(0, f"addr: {dotted(10, 0, 0, 7)}")
    out.write_text("\n".join(lines) + "\n")
    kinds = sorted(f.kind for f in scan_paths([out]))
    assert kinds == [
        "age-identity", "age-recipient", "age-recipient", "private-ipv4", "ssh-public-key"
    ]


def test_recipient_line_in_a_file_that_is_not_sops_is_caught(
    keys: list[tuple[str, str]], tmp_path: Path
) -> None:
    f = tmp_path / "notsops.yaml"
    f.write_text(f"sops:\n  age:\n    - recipient: {keys[0][0]}\n")  # no mac: not sops
    assert [x.kind for x in scan_paths([f])] == ["age-recipient"]


def test_sops_yaml_creation_rules_are_allowed_and_only_them(
    keys: list[tuple[str, str]], tmp_path: Path
) -> None:
    (r1, _), (r2, s2), (r3, _) = keys
    cfg = tmp_path / ".sops.yaml"
    cfg.write_text(
        "keys:\n"
        f"  - &admin {r1}\n"
        "creation_rules:\n"
        "  - path_regex: secrets/nas/.*\n"
        f"    age: >-\n      {r1},\n      {r2}\n"
        "  - path_regex: secrets/all/.*\n"
        "    key_groups:\n"
        f"      - age:\n          - *admin\n          - {r3}\n"
    )
    # The anchor a rule refers to is structural too.
    assert scan_paths([cfg]) == []
    # A key listed but used by no rule, a recipient in a comment, an identity: findings.
    r4, _ = age_pair()
    text = cfg.read_text().replace("keys:\n", f"keys:\n  - &spare {r4}\n")
    cfg.write_text(text + f"# {r2}\n# {s2}\n")
    assert [(f.kind, f.line) for f in scan_paths([cfg])] == [
        ("age-recipient", 2), ("age-recipient", 14), ("age-identity", 15)
    ]
    other = tmp_path / "rules.yaml"  # the same content under another name is not a sops config
    other.write_text(cfg.read_text())
    assert "age-recipient" in {f.kind for f in scan_paths([other])}


def test_sops_ini_recipient_outside_the_sops_section_is_caught(
    keys: list[tuple[str, str]], tmp_path: Path
) -> None:
    src = tmp_path / "plain.ini"
    src.write_text("[db]\npassword = x\n")
    out = sops_encrypt(src, [keys[0][0]], tmp_path / "secret.ini")
    src.unlink()
    out.write_text(f"[owner]\nage__list_0__map_recipient = {keys[0][0]}\n" + out.read_text())
    assert [(f.kind, f.line) for f in scan_paths([out])] == [("age-recipient", 2)]
