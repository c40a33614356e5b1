"""Rules, rekey, rotate and audit on real files, checked with the real sops binary."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyrage
import pytest
from secrets_fixtures import SAMPLE_YAML, age_keygen, sops, ssh_keygen

from nixify.errors import ConfigError
from nixify.lab.secrets import HostKeyAndMounts, provision_lab_secrets
from nixify.secrets.audit import audit, trial_matrix
from nixify.secrets.cli import main as cli_main
from nixify.secrets.recipients import RECORD_NAME, RecipientsRecord
from nixify.secrets.rekey import discover, rekey_paths
from nixify.secrets.rules import (
    CONFIG_NAME,
    compute_rules,
    load_sops_yaml,
    render_sops_yaml,
)
from nixify.secrets.sopsfile import SopsFile, encrypt_tree
from nixify.secrets.ssh_to_age import private_key_to_age_identity, recipient_of_public_line
from nixify.secrets.yamlio import load as yaml_load


def _host_identity_file(tmp: Path, key: Path) -> Path:
    out = tmp / (key.name + ".agekey")
    out.write_text(private_key_to_age_identity(key.read_bytes()) + "\n")
    return out


def test_rules_are_minimal_deterministic_and_usable_by_sops(tmp_path: Path) -> None:
    op = age_keygen(tmp_path / "op.txt")
    a, b = ssh_keygen(tmp_path / "a"), ssh_keygen(tmp_path / "b")
    hosts = {
        "a": recipient_of_public_line(a.public_line),
        "b": recipient_of_public_line(b.public_line),
    }
    mounts = {"b": ["common/ntp.yaml", "nas/smb.yaml"], "a": ["common/ntp.yaml"]}
    rules = compute_rules(mounts, hosts, [op.recipient])
    assert [(r.path, r.recipients) for r in rules] == [
        ("common/ntp.yaml", (op.recipient, hosts["a"], hosts["b"])),
        ("nas/smb.yaml", (op.recipient, hosts["b"])),
    ]
    text = render_sops_yaml(rules)
    assert text == render_sops_yaml(
        compute_rules(dict(reversed(mounts.items())), hosts, [op.recipient])
    )
    assert "shamir" not in text and "key_groups" not in text
    secrets = tmp_path / "secrets"
    (secrets / "nas").mkdir(parents=True)
    (secrets / CONFIG_NAME).write_text(text)
    (secrets / "nas" / "smb.yaml").write_text("password: hunter2\n")
    # the real sops creates the file from our rules: exactly operator + b
    sops(["encrypt", "-i", "nas/smb.yaml"], tmp_path, cwd=secrets)
    assert SopsFile.load(secrets / "nas" / "smb.yaml").recipients == [op.recipient, hosts["b"]]
    loaded = load_sops_yaml(secrets / CONFIG_NAME)
    assert [r.recipients for r in loaded] == [r.recipients for r in rules]


def test_unknown_host_in_a_rule_is_an_error(tmp_path: Path) -> None:
    op = age_keygen(tmp_path / "op.txt")
    with pytest.raises(ConfigError, match=r"rule for nas/smb.yaml: unknown host 'ghost'"):
        compute_rules({"ghost": ["nas/smb.yaml"]}, {}, [op.recipient])


def test_rekey_scenario_b_out_c_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """File keyed to operator + A + B; the rule changes to operator + A + C."""
    op = age_keygen(tmp_path / "op.txt")
    keys = {n: ssh_keygen(tmp_path / n) for n in "abc"}
    rcpt = {n: recipient_of_public_line(k.public_line) for n, k in keys.items()}
    ids = {n: _host_identity_file(tmp_path, k.private) for n, k in keys.items()}
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    plain = secrets / "app.yaml"
    plain.write_text(SAMPLE_YAML)
    (secrets / CONFIG_NAME).write_text(
        render_sops_yaml(
            compute_rules({"a": ["app.yaml"], "b": ["app.yaml"]}, rcpt, [op.recipient])
        )
    )
    sops(["encrypt", "-i", "app.yaml"], tmp_path, cwd=secrets)
    before = SopsFile.load(plain)
    expected = sops(["decrypt", str(plain)], tmp_path, ids["b"]).stdout
    (secrets / CONFIG_NAME).write_text(
        render_sops_yaml(
            compute_rules({"a": ["app.yaml"], "c": ["app.yaml"]}, rcpt, [op.recipient])
        )
    )
    dry = rekey_paths([secrets], dry_run=True, identity_files=[op.identity_file])
    assert [(r.status, r.added, r.removed) for r in dry.results] == [
        ("would-rekey", (rcpt["c"],), (rcpt["b"],))
    ]
    assert SopsFile.load(plain).text == before.text  # dry run wrote nothing
    report = rekey_paths([secrets], identity_files=[op.identity_file])
    assert [r.status for r in report.results] == ["rekeyed"]
    assert sops(["decrypt", str(plain)], tmp_path, ids["c"]).stdout == expected
    assert sops(["decrypt", str(plain)], tmp_path, ids["b"], check=False).returncode != 0
    after = SopsFile.load(plain)
    assert after.tree == before.tree  # every value and comment, still encrypted, untouched
    for field in ("mac", "lastmodified"):
        assert after.metadata[field] == before.metadata[field]
    # idempotent: a second run rewrites nothing
    mtime = plain.stat().st_mtime_ns
    again = rekey_paths([secrets], identity_files=[op.identity_file])
    assert [r.status for r in again.results] == ["unchanged"]
    assert plain.stat().st_mtime_ns == mtime
    # rotate: a fresh data key; b, removed, can no longer open even an old copy's key
    old_key = after.data_key([pyrage.x25519.Identity.from_str(ids["a"].read_text().strip())])
    monkeypatch.setenv("SOPS_AGE_KEY_FILE", str(op.identity_file))
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cli_main(["secrets", "rotate", str(plain)]) == 0
    rotated = SopsFile.load(plain)
    assert rotated.recipients == [op.recipient, rcpt["a"], rcpt["c"]]
    assert (
        rotated.data_key([pyrage.x25519.Identity.from_str(ids["a"].read_text().strip())]) != old_key
    )
    assert sops(["decrypt", str(plain)], tmp_path, ids["c"]).stdout == expected


def _tree(secrets: Path, n: int, op: str, hosts: dict[str, str]) -> None:
    doc = yaml_load("# dummy\nkey: value\nn: 1\n")
    mounts: dict[str, list[str]] = {h: [] for h in hosts}
    for i in range(n):
        rel = f"f{i:03d}.yaml"
        (secrets / rel).write_text(encrypt_tree(doc, "yaml", [op]))
        mounts[sorted(hosts)[i % len(hosts)]].append(rel)
    (secrets / CONFIG_NAME).write_text(render_sops_yaml(compute_rules(mounts, hosts, [op])))


def test_bad_input_rekeys_nothing(tmp_path: Path) -> None:
    op = age_keygen(tmp_path / "op.txt")
    a = ssh_keygen(tmp_path / "a")
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    _tree(secrets, 3, op.recipient, {"a": recipient_of_public_line(a.public_line)})
    stray = secrets / "stray.yaml"
    stray.write_text(encrypt_tree(yaml_load("x: 1\n"), "yaml", [op.recipient]))
    before = {p: p.read_bytes() for p in secrets.iterdir()}
    with pytest.raises(ConfigError, match=r"stray.yaml: no creation rule in .* matches this file"):
        rekey_paths([secrets], identity_files=[op.identity_file])
    assert {p: p.read_bytes() for p in secrets.iterdir()} == before
    # a tampered file is reported, never rewritten; the others are rekeyed
    stray.unlink()
    f0 = secrets / "f000.yaml"
    f0.write_text(f0.read_text().replace("data:", "data:AAAA", 1))
    tampered = f0.read_bytes()
    report = rekey_paths([secrets], identity_files=[op.identity_file])
    errors = [r for r in report.results if r.status == "error"]
    assert len(errors) == 1 and "f000.yaml: cannot decrypt value at" in errors[0].error
    assert f0.read_bytes() == tampered
    assert not report.ok


KILL_SCRIPT = """
import sys
from pathlib import Path
from nixify.secrets.rekey import rekey_paths
rekey_paths([Path(sys.argv[1])], identity_files=[Path(sys.argv[2])], workers=2)
"""


def test_kill_9_half_way_leaves_every_file_decryptable(tmp_path: Path) -> None:
    op = age_keygen(tmp_path / "op.txt")
    hosts = {n: recipient_of_public_line(ssh_keygen(tmp_path / n).public_line) for n in "abcd"}
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    _tree(secrets, 200, op.recipient, hosts)
    files = discover([secrets])
    assert len(files) == 200
    originals = {f: f.read_bytes() for f in files}
    proc = subprocess.Popen(
        [sys.executable, "-c", KILL_SCRIPT, str(secrets), str(op.identity_file)],
        start_new_session=True,  # its own process group: the run and its workers
    )
    # wait until some files are rewritten, then kill the whole run mid-way
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        done = sum(1 for f in files if f.read_bytes() != originals[f])
        if done >= 20 or proc.poll() is not None:
            break
        time.sleep(0.005)
    os.killpg(proc.pid, signal.SIGKILL)  # kill -9 the whole run at once, by its group id
    proc.wait()
    changed = [f for f in files if f.read_bytes() != originals[f]]
    assert 0 < len(changed) < 200, f"kill landed outside the run ({len(changed)} changed)"
    ident = [pyrage.x25519.Identity.from_str(op.identity_file.read_text().split()[-1])]
    for f in files:
        plain = SopsFile.load(f).plaintext(ident)  # parses, MAC verifies: old or new, never torn
        assert "key: value" in plain
    for f in changed[:3]:
        assert sops(["decrypt", str(f)], tmp_path, op.identity_file).stdout.startswith(b"# dummy")
    # the run can be resumed and finishes the job, leaving no temp file behind
    report = rekey_paths([secrets], identity_files=[op.identity_file])
    assert report.ok
    assert not list(secrets.glob(".*.tmp"))
    assert all(
        r.status == "unchanged"
        for r in rekey_paths([secrets], identity_files=[op.identity_file]).results
    )


def test_audit_matrix_and_failures(tmp_path: Path) -> None:
    op = tmp_path / "op.txt"
    keys = {n: ssh_keygen(tmp_path / n) for n in ("nas", "dev", "builder")}
    mounts = {"nas": ["common/ntp.yaml", "nas/smb.yaml"], "dev": ["common/ntp.yaml"], "builder": []}
    secrets = tmp_path / "secrets"
    provision_lab_secrets(
        secrets,
        {n: HostKeyAndMounts(k.public_line, mounts[n]) for n, k in keys.items()},
        op,
    )
    record = RecipientsRecord.load(secrets / RECORD_NAME)
    report = audit(secrets, record, mounts)
    assert report.ok, report.problems
    assert report.matrix() == {
        "builder": {"common/ntp.yaml": False, "nas/smb.yaml": False},
        "dev": {"common/ntp.yaml": True, "nas/smb.yaml": False},
        "nas": {"common/ntp.yaml": True, "nas/smb.yaml": True},
    }
    # the hard way: every host key against every file
    idents = {
        n: pyrage.x25519.Identity.from_str(private_key_to_age_identity(k.private.read_bytes()))
        for n, k in keys.items()
    }
    tried = trial_matrix(discover([secrets]), idents)
    assert {
        h: {Path(f).relative_to(secrets).as_posix(): v for f, v in row.items()}
        for h, row in tried.items()
    } == report.matrix()
    # provision is idempotent
    again = provision_lab_secrets(
        secrets, {n: HostKeyAndMounts(k.public_line, mounts[n]) for n, k in keys.items()}, op
    )
    assert not again.created and all(r.status == "unchanged" for r in again.rekey.results)
    # dev now reads nas/smb.yaml without mounting it: the audit fails and says so
    smb = SopsFile.load(secrets / "nas/smb.yaml")
    key = smb.data_key([pyrage.x25519.Identity.from_str(op.read_text().split()[-1])])
    text = smb.with_recipients([*smb.recipients, record.hosts["dev"].age], key)
    assert text is not None
    (secrets / "nas/smb.yaml").write_text(text)
    bad = audit(secrets, record, mounts)
    assert not bad.ok
    assert "host dev can decrypt nas/smb.yaml but does not mount it" in bad.problems
    assert "nas/smb.yaml: recipient dev is not named by its rule" in bad.problems
    assert bad.needs_rekey == ["nas/smb.yaml"]
    # nas is rebuilt: new host key; check names it and the files to rekey
    (tmp_path / "nas").unlink()
    (tmp_path / "nas.pub").unlink()
    new_nas = ssh_keygen(tmp_path / "nas")
    record.set_host_key("nas", new_nas.public_line)
    record.save(secrets / RECORD_NAME)
    rebuilt = audit(secrets, record, mounts)
    assert any(
        p.startswith("host nas mounts common/ntp.yaml but cannot decrypt it: its host key changed")
        for p in rebuilt.problems
    )


def test_one_rekey_at_a_time(tmp_path: Path) -> None:
    import fcntl

    op = age_keygen(tmp_path / "op.txt")
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    _tree(
        secrets,
        2,
        op.recipient,
        {"a": recipient_of_public_line(ssh_keygen(tmp_path / "a").public_line)},
    )
    with open(secrets / CONFIG_NAME) as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(ConfigError, match="another rekey is running"):
            rekey_paths([secrets], identity_files=[op.identity_file])
    assert rekey_paths([secrets], identity_files=[op.identity_file]).ok
