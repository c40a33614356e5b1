"""The on-host install script, run here against temporary paths with the real sops."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

from secrets_fixtures import ssh_keygen

from nixify.secrets.install import (
    InstallPlan,
    SecretFileSpec,
    default_key_command,
    helper_source,
    sops_binary_path,
)
from nixify.secrets.sopsfile import encrypt_tree
from nixify.secrets.ssh_to_age import recipient_of_public_line
from nixify.secrets.tree import Branch


def _plan(tmp: Path, key: Path, files: list[SecretFileSpec]) -> InstallPlan:
    return InstallPlan(
        host="testhost",
        files=files,
        decrypter=sops_binary_path(),
        key_command=default_key_command(sys.executable, str(helper_source()), str(key)),
        encrypted_dir=str(tmp / "enc"),
        link=str(tmp / "run" / "secrets"),
        generations=str(tmp / "run" / "secrets.d"),
        env={"HOME": str(tmp)},
    )


def _run(plan: InstallPlan) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOPS_")}
    return subprocess.run(["sh", "-c", plan.script()], capture_output=True, text=True, env=env)


def test_install_generations_modes_and_atomic_switch(tmp_path: Path) -> None:
    host = ssh_keygen(tmp_path / "hostkey")
    other = ssh_keygen(tmp_path / "otherkey")
    rcpt = recipient_of_public_line(host.public_line)
    (tmp_path / "enc" / "app").mkdir(parents=True)
    values = {"app/db.yaml": "s3cr3t-db", "token.json": "s3cr3t-token"}
    for rel, value in values.items():
        fmt = "json" if rel.endswith(".json") else "yaml"
        doc = encrypt_tree(Branch([("value", value)]), fmt, [rcpt])
        (tmp_path / "enc" / rel).write_text(doc)
    specs = [SecretFileSpec("app/db.yaml"), SecretFileSpec("token.json", mode="0440")]
    plan = _plan(tmp_path, host.private, specs)
    assert not any(v in plan.script() for v in values.values())
    first = _run(plan)
    assert first.returncode == 0, first.stderr
    assert not any(v in first.stdout + first.stderr for v in values.values())
    link = tmp_path / "run" / "secrets"
    assert os.readlink(link) == str(tmp_path / "run" / "secrets.d" / "0")
    db = link / "app" / "db.yaml"
    assert db.read_text() == "value: s3cr3t-db\n"
    assert stat.S_IMODE(db.stat().st_mode) == 0o400 and db.stat().st_uid == 0
    assert stat.S_IMODE((link / "token.json").stat().st_mode) == 0o440
    # more generations: the link moves, only the current and previous one are kept
    for n in (1, 2):
        assert _run(plan).returncode == 0
        assert os.readlink(link).endswith(f"/secrets.d/{n}")
    assert sorted(p.name for p in (tmp_path / "run" / "secrets.d").iterdir()) == ["1", "2"]
    # a host that is not a recipient: the install fails and the live secrets stay
    refused = _run(replace(plan, key_command=default_key_command(
        sys.executable, str(helper_source()), str(other.private))))  # fmt: skip
    assert refused.returncode != 0
    assert os.readlink(link).endswith("/secrets.d/2")
    assert (link / "app" / "db.yaml").read_text() == "value: s3cr3t-db\n"
    assert not any(v in refused.stdout + refused.stderr for v in values.values())
    # and the next good install cleans up the half-made generation
    assert _run(plan).returncode == 0
    assert not list((tmp_path / "run" / "secrets.d").glob("*.tmp"))
