"""The blast-radius audit: who can decrypt what, from the files' actual recipients.

The matrix is host x file; a cell is true when the host's recipient is among
the file's ``sops.age`` recipients. The audit fails when a file has a
recipient its rule does not name, lacks one its rule names, a host can
decrypt a file it does not mount, or a host mounts a file it cannot decrypt
(a rebuilt host whose new key the file has not been rekeyed to).
``trial_matrix`` checks the same matrix the hard way, by opening every file's
data key with every host's identity.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pyrage

from nixify.errors import ConfigError
from nixify.inventory import load_fleet
from nixify.inventory.model import check_secret_files
from nixify.secrets.recipients import RecipientsRecord
from nixify.secrets.rekey import discover, plan_jobs
from nixify.secrets.rules import CONFIG_NAME, LoadedRule, find_config
from nixify.secrets.sopsfile import SopsError, SopsFile


@dataclass(frozen=True)
class FileAudit:
    relpath: str
    recipients: tuple[str, ...]
    rule: tuple[str, ...]
    mounted_by: tuple[str, ...]
    readable_by: tuple[str, ...]


@dataclass
class AuditReport:
    hosts: list[str]
    files: list[FileAudit] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    needs_rekey: list[str] = field(default_factory=list)
    # host -> the problems above that its key explains (an old key still used, its
    # current key missing): a host whose key changed is one finding, not one per file
    by_host: dict[str, list[str]] = field(default_factory=dict)

    def _add(self, problem: str, host: str | None = None) -> None:
        self.problems.append(problem)
        if host is not None:
            self.by_host.setdefault(host, []).append(problem)

    @property
    def ok(self) -> bool:
        return not self.problems

    def matrix(self) -> dict[str, dict[str, bool]]:
        return {h: {f.relpath: h in f.readable_by for f in self.files} for h in self.hosts}

    def to_json(self) -> str:
        doc = {
            "ok": self.ok,
            "hosts": self.hosts,
            "files": [
                {
                    "path": f.relpath,
                    "recipients": list(f.recipients),
                    "rule": list(f.rule),
                    "mounted_by": list(f.mounted_by),
                    "readable_by": list(f.readable_by),
                }
                for f in self.files
            ],
            "matrix": self.matrix(),
            "problems": self.problems,
            "needs_rekey": self.needs_rekey,
        }
        return json.dumps(doc, indent=2, sort_keys=False)

    def render(self) -> str:
        """The matrix as text: R = can read and mounts, ! = can read but does not mount,
        ? = mounts but cannot read, . = neither."""
        width = max([len(h) for h in self.hosts] + [4])
        lines = []
        for i, f in enumerate(self.files):
            lines.append(f"{' ' * (width + 1)}{'|' * i}+- [{i}] {f.relpath}")
        header = " " * (width + 1) + "".join(str(i % 10) for i in range(len(self.files)))
        lines.append(header)
        for h in self.hosts:
            cells = []
            for f in self.files:
                reads, mounts = h in f.readable_by, h in f.mounted_by
                cells.append("R" if reads and mounts else "!" if reads else "?" if mounts else ".")
            lines.append(f"{h.ljust(width)} {''.join(cells)}")
        lines.append("")
        if self.problems:
            lines.append(f"{len(self.problems)} problem(s):")
            lines.extend(f"  - {p}" for p in self.problems)
        else:
            lines.append(
                f"ok: {len(self.files)} files, {len(self.hosts)} hosts, minimal recipients"
            )
        if self.needs_rekey:
            lines.append("needs rekey: " + " ".join(self.needs_rekey))
        return "\n".join(lines) + "\n"


def audit(
    secrets_dir: Path,
    record: RecipientsRecord,
    mounts: Mapping[str, Sequence[str]],
    config: Path | None = None,
    rules: Sequence[LoadedRule] | None = None,
) -> AuditReport:
    """Audit every secret file under ``secrets_dir`` against its rule and the mounts.

    ``rules`` (default: those of ``config``, found as for a rekey) lets a caller
    audit against the rules the inventory asks for before they are written.
    """
    config = config or (
        secrets_dir / CONFIG_NAME if rules is not None else find_config(secrets_dir)
    )
    jobs = plan_jobs(discover([secrets_dir]), config, rules)
    host_rcpt = record.host_recipients()
    hosts = sorted(set(host_rcpt) | set(mounts))
    report = AuditReport(hosts)
    known = set(record.operator_recipients) | set(host_rcpt.values())
    owner = {r: n for n, h in record.hosts.items() for r in (*h.previous, h.age)}
    for job in jobs:
        try:
            sf = SopsFile.load(job.path)
        except SopsError as exc:
            report.problems.append(str(exc))
            continue
        actual = tuple(sf.recipients)
        mounted = tuple(h for h in hosts if job.relpath in mounts.get(h, ()))
        readable = tuple(h for h in hosts if host_rcpt.get(h) in actual)
        report.files.append(FileAudit(job.relpath, actual, job.recipients, mounted, readable))
        stale = False
        for r in actual:
            if r not in job.recipients:
                report._add(
                    f"{job.relpath}: recipient {record.label(r)} is not named by its rule",
                    owner.get(r),
                )
                stale = True
            if r not in known:  # an old key of a host is that host's finding
                report._add(f"{job.relpath}: unknown recipient {r}", owner.get(r))
        for r in job.recipients:
            if r not in actual:
                report._add(
                    f"{job.relpath}: lacks recipient {record.label(r)} that its rule names",
                    owner.get(r),
                )
                stale = True
        for h in readable:
            if h not in mounted:
                report.problems.append(f"host {h} can decrypt {job.relpath} but does not mount it")
        for h in mounted:
            if h not in readable:
                why = (
                    (
                        "its host key changed since the file was keyed (rebuilt host?)"
                        if any(r in record.hosts[h].previous for r in actual)
                        else "not a recipient"
                    )
                    if h in record.hosts
                    else "no host key recorded"
                )
                report._add(f"host {h} mounts {job.relpath} but cannot decrypt it: {why}", h)
        if stale:
            report.needs_rekey.append(job.relpath)
    return report


def trial_matrix(
    files: Sequence[Path], identities: Mapping[str, pyrage.x25519.Identity]
) -> dict[str, dict[str, bool]]:
    """host -> file -> whether the host's identity actually opens the file's data key."""
    out: dict[str, dict[str, bool]] = {h: {} for h in identities}
    for f in files:
        sf = SopsFile.load(f)
        for host, ident in identities.items():
            try:
                sf.data_key([ident])
                out[host][str(f)] = True
            except SopsError:
                out[host][str(f)] = False
    return out


def mounts_from_fleet(hosts_file: Path, secrets_dir: Path | None = None) -> dict[str, list[str]]:
    """host -> mounted secret files, from the inventory's hosts file.

    With ``secrets_dir``, every declared file must exist there: ConfigError naming
    host, field and path for each one that does not (the fleet loader has no
    secrets directory to check against, so the check is made here).
    """
    try:
        fleet = load_fleet(hosts_file)
    except FileNotFoundError as exc:
        raise ConfigError(f"{hosts_file}: no such inventory") from exc
    if secrets_dir is not None:
        errors = check_secret_files(list(fleet), secrets_dir, str(hosts_file))
        if errors:
            raise ConfigError("invalid host data:\n" + "\n".join(errors))
    return {h.name: list(h.secrets) for h in fleet}


@dataclass
class Verification:
    """What opening every file with the operator's identities found."""

    problems: list[str] = field(default_factory=list)  # corrupt files, each named
    verified: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)  # no identity opens them


def verify_files(
    files: Sequence[Path], identities: Sequence[pyrage.x25519.Identity]
) -> Verification:
    """Strict parse of every file, and its values and MAC where ``identities`` open it."""
    out = Verification()
    for f in files:
        try:
            sf = SopsFile.load(f)
        except SopsError as exc:
            out.problems.append(str(exc))
            continue
        try:
            key = sf.data_key(identities)
        except SopsError:
            out.unreadable.append(str(f))
            continue
        try:
            sf.decrypt_tree(key)
        except SopsError as exc:
            out.problems.append(str(exc))
            continue
        out.verified.append(str(f))
    return out


def stale_mounts(secrets_dir: Path, host: str, recipient: str, mounts: Sequence[str]) -> list[str]:
    """The files ``host`` mounts that are not keyed to ``recipient`` (its current key).

    The deploy calls this with the key the host-key fact just read: a non-empty
    answer means the host was rebuilt (or never keyed) and those files need a rekey
    before its secrets can be installed.
    """
    stale = []
    for rel in mounts:
        sf = SopsFile.load(secrets_dir / rel)
        if recipient not in sf.recipients:
            stale.append(rel)
    return stale
