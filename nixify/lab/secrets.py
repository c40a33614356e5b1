"""The lab's secrets tree (and a demo's): a fleet whose host keys are known.

``provision_lab_secrets`` makes (or brings up to date) in ``secrets_dir``:
the operator's age identity (if absent), ``recipients.yaml`` from the hosts'
public keys, ``.sops.yaml`` with one minimal rule per mounted file, and each
mounted file, sops-encrypted, holding random dummy values. Run again, it keeps
existing files and their values and only rekeys what changed (idempotent).
The plaintext dummy values exist only in this process's memory.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pyrage

from nixify.errors import ConfigError
from nixify.secrets.keys import identities_from_file
from nixify.secrets.recipients import RECORD_NAME, RecipientsRecord
from nixify.secrets.rekey import MOUNTS_NAME, RekeyReport, plan_jobs, run_rekey, save_mounts
from nixify.secrets.rules import CONFIG_NAME, compute_rules, render_sops_yaml
from nixify.secrets.sopsfile import encrypt_tree, format_of
from nixify.secrets.tree import Branch, Comment
from nixify.util import atomic_write


@dataclass(frozen=True)
class HostKeyAndMounts:
    """A host's ``ssh-ed25519`` public key line and the secret files it mounts."""

    ssh_host_key: str
    mounts: Sequence[str] = ()


@dataclass
class ProvisionResult:
    operator_recipient: str
    created: list[str] = field(default_factory=list)
    rekey: RekeyReport = field(default_factory=RekeyReport)
    config_changed: bool = False
    record_changed: bool = False


def ensure_operator_identity(path: Path) -> str:
    """The operator's recipient; a new age identity (0600) is written when ``path`` is absent."""
    if not path.exists():
        ident = pyrage.x25519.Identity.generate()
        text = (
            "# nixify operator age identity (created by provision)\n"
            f"# public key: {ident.to_public()}\n{ident}\n"
        )
        atomic_write(path, text.encode(), mode=0o600)
    ids = identities_from_file(path)
    return ids[0].recipient


def dummy_document(relpath: str) -> Branch:
    """Random values for a secret file: a comment, a token and a password."""
    return Branch(
        [
            Comment(f" {relpath}: generated dummy secret (nixify provision)"),
            ("token", os.urandom(16).hex()),
            ("password", base64.urlsafe_b64encode(os.urandom(18)).decode()),
        ]
    )


def provision_lab_secrets(
    secrets_dir: Path,
    hosts: Mapping[str, HostKeyAndMounts],
    operator_identity_file: Path,
    operator_name: str = "operator",
) -> ProvisionResult:
    """Make ``secrets_dir`` hold exactly the fleet's secrets, keyed to its rules."""
    secrets_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(secrets_dir, 0o700)
    op = ensure_operator_identity(operator_identity_file)
    result = ProvisionResult(op)

    record_path = secrets_dir / RECORD_NAME
    record = RecipientsRecord.load(record_path)
    record.operators[operator_name] = op
    for name, host in sorted(hosts.items()):
        record.set_host_key(name, host.ssh_host_key)
    for name in list(record.hosts):
        if name not in hosts:
            record.forget_host(name)
    result.record_changed = record.save(record_path)

    mounts = {name: list(h.mounts) for name, h in sorted(hosts.items())}
    save_mounts(secrets_dir / MOUNTS_NAME, mounts)
    rules = compute_rules(mounts, record.host_recipients(), record.operator_recipients)
    config = secrets_dir / CONFIG_NAME
    text = render_sops_yaml(rules)
    if not config.exists() or config.read_text() != text:
        atomic_write(config, text.encode())
        result.config_changed = True

    for rule in rules:
        target = secrets_dir / rule.path
        if target.exists():
            continue
        if format_of(target) == "json" and target.suffix != ".json":
            raise ConfigError(f"{rule.path}: unsupported secret file type")
        if target.suffix not in (".yaml", ".yml", ".json"):
            raise ConfigError(f"{rule.path}: nixify writes YAML or JSON sops files only")
        doc = encrypt_tree(dummy_document(rule.path), format_of(target), rule.recipients)
        atomic_write(target, doc.encode(), mode=0o600)
        result.created.append(rule.path)

    files = [secrets_dir / r.path for r in rules]
    result.rekey = run_rekey(plan_jobs(files, config), identity_files=[operator_identity_file])
    if not result.rekey.ok:
        errors = [r.error for r in result.rekey.results if r.status == "error"]
        raise ConfigError("provision: rekey failed: " + "; ".join(errors))
    return result


LAB_OPERATOR_IDENTITY = "operator_age.txt"
