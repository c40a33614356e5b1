"""``nixify ssh-to-age`` and ``nixify secrets ...``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nixify.errors import ConfigError, NixifyError
from nixify.inventory import load_fleet
from nixify.secrets.audit import audit, mounts_from_fleet, verify_files
from nixify.secrets.keys import find_identities, identities_from_file
from nixify.secrets.recipients import RECORD_NAME, RecipientsRecord
from nixify.secrets.rekey import (
    MOUNTS_NAME,
    RekeyReport,
    discover,
    load_mounts,
    plan_jobs,
    rekey_paths,
)
from nixify.secrets.rules import (
    CONFIG_NAME,
    CreationRule,
    as_loaded,
    compute_rules,
    find_config,
    render_sops_yaml,
)
from nixify.secrets.sopsfile import SopsFile
from nixify.secrets.ssh_to_age import age_recipients_from_text, private_key_to_age_identity
from nixify.util import atomic_write


def _read_input(path: str | None, binary: bool) -> Any:
    if path is None or path == "-":
        return sys.stdin.buffer.read() if binary else sys.stdin.read()
    try:
        p = Path(path)
        return p.read_bytes() if binary else p.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc


def cmd_ssh_to_age(args: argparse.Namespace) -> int:
    if args.private_key:
        data = _read_input(args.input, binary=True)
        if not isinstance(data, bytes):
            data = data.encode()
        passphrase = None
        if args.passphrase_env:
            import os

            value = os.environ.get(args.passphrase_env)
            if value is None:
                raise ConfigError(f"${args.passphrase_env} is not set")
            passphrase = value.encode()
        where = args.input or "<stdin>"
        print(private_key_to_age_identity(data, passphrase, where=where))
        return 0
    text = _read_input(args.input, binary=False)
    recipients = age_recipients_from_text(text)
    if not recipients:
        raise ConfigError(f"{args.input or '<stdin>'}: no ssh-ed25519 public key found")
    for r in recipients:
        print(r)
    return 0


def main_ssh_to_age(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="nixify ssh-to-age")
    _ssh_to_age_args(parser)
    return int(cmd_ssh_to_age(parser.parse_args(list(argv))))


def _ssh_to_age_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input", dest="input", metavar="FILE", help="read FILE (default stdin)")
    parser.add_argument("-i", dest="input", help=argparse.SUPPRESS)  # the old spelling
    parser.add_argument(
        "--private-key",
        action="store_true",
        help="convert an OpenSSH ed25519 private key to an AGE-SECRET-KEY-1 identity",
    )
    parser.add_argument(
        "--passphrase-env",
        metavar="VAR",
        help="environment variable holding the key's passphrase (default SSH_TO_AGE_PASSPHRASE)",
    )


def _identities(args: argparse.Namespace) -> list[Any]:
    extra = [Path(p) for p in (getattr(args, "identity", None) or [])]
    if extra:
        return [i.identity for f in extra for i in identities_from_file(f)]
    return [i.identity for i in find_identities()]


def cmd_decrypt(args: argparse.Namespace) -> int:
    sf = SopsFile.load(args.file)
    text = sf.plaintext(_identities(args))
    sys.stdout.write(text)
    return 0


def register(subparsers: Any) -> dict[str, Any]:
    """Add ``ssh-to-age`` and ``secrets``; returns ``{"secrets": its actions}`` so that
    another command module can add actions of its own."""
    p = subparsers.add_parser("ssh-to-age", help="SSH ed25519 keys to age recipients/identities")
    _ssh_to_age_args(p)
    p.set_defaults(func=cmd_ssh_to_age)

    sec = subparsers.add_parser("secrets", help="sops/age secrets: decrypt, rules, rekey, audit")
    sub = sec.add_subparsers(dest="secrets_command", metavar="ACTION")
    _register_actions(sub)
    return {"secrets": sub}


def _identity_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--identity",
        action="append",
        metavar="FILE",
        help="age identity file (default: found as sops finds it)",
    )


def _mounts(args: argparse.Namespace) -> dict[str, list[str]]:
    if args.mounts:
        return load_mounts(Path(args.mounts))
    own = Path(args.secrets_dir) / MOUNTS_NAME
    if args.inventory is None and own.is_file():
        return load_mounts(own)
    return mounts_from_fleet(Path(args.inventory or "inventories/hosts.yaml"))


def _record(args: argparse.Namespace) -> RecipientsRecord:
    return RecipientsRecord.load(Path(args.secrets_dir) / RECORD_NAME)


def _desired_rules(
    secrets_dir: Path, mounts: dict[str, list[str]], record: RecipientsRecord
) -> list[CreationRule]:
    """Rules for every mounted file, plus operator-only rules for files no host mounts
    (e.g. the operator's own address map), so that a rekey covers the whole tree."""
    mounted = {f for files in mounts.values() for f in files}
    extra = []
    if secrets_dir.is_dir():
        for f in discover([secrets_dir]):
            rel = f.relative_to(secrets_dir).as_posix()
            if rel not in mounted:
                extra.append(rel)
    return compute_rules(
        mounts, record.host_recipients(), record.operator_recipients, extra_files=extra
    )


def cmd_rules(args: argparse.Namespace) -> int:
    record = _record(args)
    rules = _desired_rules(Path(args.secrets_dir), _mounts(args), record)
    text = render_sops_yaml(rules)
    target = Path(args.secrets_dir) / CONFIG_NAME
    current = target.read_text() if target.exists() else None
    if args.check:
        if current != text:
            print(f"{target}: out of date with the inventory; run `nixify secrets rules`")
            return 1
        print(f"{target}: up to date ({len(rules)} rules)")
        return 0
    if current == text:
        print(f"{target}: up to date ({len(rules)} rules)")
        return 0
    atomic_write(target, text.encode())
    print(f"{target}: wrote {len(rules)} rules")
    return 0


def cmd_collect(args: argparse.Namespace) -> int:
    path = Path(args.secrets_dir) / RECORD_NAME
    record = RecipientsRecord.load(path)
    keys: dict[str, str] = {}
    if args.lab_status:
        import json

        doc = json.loads(_read_input(args.lab_status, binary=False))
        for h in doc.get("hosts", []):
            keys[h["name"]] = Path(h["host_key_pub"]).read_text()
    if args.inventory:
        for h in load_fleet(Path(args.inventory)):
            if h.ssh_host_key:
                keys[h.name] = h.ssh_host_key
    for spec in args.host or []:
        name, _, pub = spec.partition("=")
        if not name or not pub:
            raise ConfigError(f"--host {spec!r}: expected NAME=PUBKEYFILE")
        keys[name] = Path(pub).read_text()
    if args.operator:
        name, _, rcpt = args.operator.partition("=")
        record.operators[name] = rcpt
    for name, line in sorted(keys.items()):
        change = record.set_host_key(name, line)
        if change:
            print(f"{name}: host key {change}")
    record.save(path)
    return 0


def _report_rekey(
    report: RekeyReport, record: RecipientsRecord, dry_run: bool, as_json: bool = False
) -> int:
    if as_json:
        import json

        doc = [
            {
                "path": r.relpath,
                "status": r.status,
                "added": [record.label(a) for a in r.added],
                "removed": [record.label(x) for x in r.removed],
                **({"error": r.error} if r.error else {}),
            }
            for r in report.results
        ]
        print(json.dumps({"ok": report.ok, "dry_run": dry_run, "files": doc}, indent=2))
        return 0 if report.ok else 1
    for r in report.results:
        if r.status == "unchanged":
            continue
        if r.status == "error":
            print(f"error {r.relpath}: {r.error}", file=sys.stderr)
            continue
        verb = "would rekey" if dry_run else "rekeyed"
        parts = [f"+{record.label(a)}" for a in r.added] + [
            f"-{record.label(x)}" for x in r.removed
        ]
        print(f"{verb} {r.relpath}: {' '.join(parts)}")
    n = len(report.results)
    done = report.count("would-rekey" if dry_run else "rekeyed")
    errors = report.count("error")
    what = "to rekey" if dry_run else "rekeyed"
    print(f"{n} files: {done} {what}, {report.count('unchanged')} unchanged, {errors} errors")
    return 0 if report.ok else 1


def cmd_rekey(args: argparse.Namespace) -> int:
    paths = [Path(p) for p in args.paths] or [Path("secrets")]
    config = Path(args.config) if args.config else None
    report = rekey_paths(
        paths,
        config=config,
        dry_run=args.dry_run,
        identity_files=[Path(f) for f in args.identity or []],
        workers=args.jobs,
    )
    record_dir = (config or find_config(paths[0])).parent
    record = RecipientsRecord.load(record_dir / RECORD_NAME)
    return _report_rekey(report, record, args.dry_run, args.json)


def cmd_rotate(args: argparse.Namespace) -> int:
    path = Path(args.file)
    config = Path(args.config) if args.config else find_config(path)
    job = plan_jobs([path], config)[0]
    sf = SopsFile.load(path)
    text = sf.rotated(_identities(args), job.recipients)
    atomic_write(path, text.encode())
    print(f"rotated {job.relpath}: new data key for {len(job.recipients)} recipients")
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    secrets_dir = Path(args.secrets_dir)
    report = audit(secrets_dir, _record(args), _mounts(args))
    sys.stdout.write(report.to_json() + "\n" if args.json else report.render())
    return 0 if report.ok else 1


def _missing_mounted_files(
    args: argparse.Namespace, secrets_dir: Path, mounts: dict[str, list[str]]
) -> list[str]:
    """A problem, naming host, field and path, per mounted file that does not exist."""
    if args.mounts:
        source = args.mounts
    elif args.inventory is None and (secrets_dir / MOUNTS_NAME).is_file():
        source = str(secrets_dir / MOUNTS_NAME)
    else:
        source = args.inventory or "inventories/hosts.yaml"
    return [
        f"{source}: host {host!r}: field 'secrets': secret {rel!r}: "
        f"no such file {secrets_dir / rel}"
        for host, files in mounts.items()
        for rel in files
        if not (secrets_dir / rel).is_file()
    ]


def _verify_check(args: argparse.Namespace, secrets_dir: Path, known: list[str]) -> list[str]:
    """Open every file with the operator's identities: values and MAC of each file they
    open are verified (a corrupt file is named); the rest are listed as unverified."""
    try:
        identities = _identities(args)
    except ConfigError as exc:
        print(f"note: values and MACs not verified: {exc}")
        return []
    files = discover([secrets_dir]) if secrets_dir.is_dir() else []
    result = verify_files(files, identities)
    if result.unreadable:
        print("note: not verified (no identity of yours opens them): " + " ".join(
            Path(f).relative_to(secrets_dir).as_posix() for f in result.unreadable
        ))  # fmt: skip
    return [p for p in result.problems if p not in known]


def cmd_check(args: argparse.Namespace) -> int:
    record = _record(args)
    secrets_dir = Path(args.secrets_dir)
    mounts = _mounts(args)
    problems = _missing_mounted_files(args, secrets_dir, mounts)
    config = secrets_dir / CONFIG_NAME
    rules = _desired_rules(secrets_dir, mounts, record)
    if not config.exists() or config.read_text() != render_sops_yaml(rules):
        problems.append(f"{config}: out of date with the inventory and host keys (run rules)")
    report = audit(secrets_dir, record, mounts, config, rules=as_loaded(rules))
    changed = sorted(
        h.name
        for h in record.hosts.values()
        if h.previous and any(set(f.recipients) & set(h.previous) for f in report.files)
    )
    for name in changed:
        files = [
            f.relpath for f in report.files if set(f.recipients) & set(record.hosts[name].previous)
        ]
        problems.append(
            f"host {name}: host key changed since its secrets were keyed; rekey {' '.join(files)}"
        )
    problems.extend(report.problems)
    problems.extend(_verify_check(args, secrets_dir, report.problems))
    for p in problems:
        print(p)
    if report.needs_rekey:
        print("needs rekey: " + " ".join(report.needs_rekey))
    if not problems:
        print(f"ok: {len(report.files)} files keyed to their rules")
    return 1 if problems else 0


def _common(p: argparse.ArgumentParser, mounts: bool = True) -> None:
    p.add_argument("--secrets-dir", default="secrets", help="the secrets directory (secrets/)")
    if mounts:
        _hosts_file_arg(p, "the fleet declaration whose hosts' `secrets` say who mounts what")
        p.add_argument("--mounts", metavar="FILE",
                       help="YAML host -> [files] instead of the fleet declaration")


def _hosts_file_arg(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--hosts-file", dest="inventory", metavar="FILE",
                   help=f"{what} (default inventories/hosts.yaml)")
    p.add_argument("--inventory", dest="inventory", help=argparse.SUPPRESS)  # the old spelling


def _register_actions(sub: Any) -> None:
    d = sub.add_parser("decrypt", help="print a sops file's plaintext, as sops decrypt does")
    d.add_argument("file", metavar="FILE", help="the sops file")
    _identity_arg(d)
    d.set_defaults(func=cmd_decrypt)

    r = sub.add_parser("rules", help="write .sops.yaml: operator + mounting hosts per file")
    _common(r)
    r.add_argument("--check", action="store_true", help="only report whether it is up to date")
    r.set_defaults(func=cmd_rules)

    c = sub.add_parser("collect", help="record host keys (from lab status or files)")
    _common(c, mounts=False)
    c.add_argument("--lab-status", metavar="JSON", help="`nixify lab status --json` output")
    c.add_argument("--host", action="append", metavar="NAME=PUBFILE",
                   help="record NAME's host key from its .pub file (repeatable)")
    _hosts_file_arg(c, "record the `ssh_host_key` entries of this fleet declaration")
    c.add_argument("--operator", metavar="NAME=AGE1...", help="record an operator's recipient")
    c.set_defaults(func=cmd_collect)

    k = sub.add_parser(
        "check",
        help="report corrupt or missing files, changed host keys and files needing a rekey",
    )
    _common(k)
    _identity_arg(k)
    k.set_defaults(func=cmd_check)

    rk = sub.add_parser("rekey", help="bring every file's recipients to its rule")
    rk.add_argument("paths", nargs="*", metavar="PATH",
                    help="files or directories to rekey (default secrets/)")
    rk.add_argument("--dry-run", action="store_true", help="print recipients added/removed")
    rk.add_argument("--config", metavar="FILE",
                    help=".sops.yaml (default: nearest above PATH, then cwd)")
    rk.add_argument("-j", "--jobs", type=int, help="worker processes (default: 2 x CPUs)")
    rk.add_argument("--json", action="store_true", help="machine-readable result per file")
    _identity_arg(rk)
    rk.set_defaults(func=cmd_rekey)

    ro = sub.add_parser("rotate", help="new data key for a file (after removing a recipient)")
    ro.add_argument("file", metavar="FILE", help="the sops file")
    ro.add_argument("--config", metavar="FILE",
                    help=".sops.yaml (default: nearest above FILE)")
    _identity_arg(ro)
    ro.set_defaults(func=cmd_rotate)

    a = sub.add_parser("audit", help="blast-radius matrix host x file; fails on excess")
    _common(a)
    a.add_argument("--json", action="store_true", help="machine-readable matrix")
    a.set_defaults(func=cmd_audit)

    _register_authoring(sub)


def _relpath(path: Path, secrets_dir: Path) -> str:
    try:
        return path.resolve().relative_to(secrets_dir.resolve()).as_posix()
    except ValueError:
        raise ConfigError(f"{path}: not inside the secrets directory {secrets_dir}") from None


def _readers(args: argparse.Namespace, targets: Sequence[str]) -> list[str]:
    """The hosts ``--for ROLE|HOST`` names, from the fleet declaration."""
    from nixify.inventory import load_fleet

    fleet = load_fleet(Path(args.inventory or "inventories/hosts.yaml"))
    hosts: list[str] = []
    for target in targets:
        named = [h.name for h in fleet.by_role(target)] or [
            h.name for h in fleet if h.name == target
        ]
        if not named:
            raise ConfigError(f"--for {target}: no such role or host in {fleet.source}")
        hosts += [h for h in named if h not in hosts]
    return hosts


def cmd_add(args: argparse.Namespace) -> int:
    from nixify.secrets.authoring import add_secret, read_plaintext, recipients_for

    path = Path(args.file)
    secrets_dir = Path(args.secrets_dir)
    rel = _relpath(path, secrets_dir)
    if path.exists():
        raise ConfigError(f"{path}: exists; change it with `nixify secrets edit {path}`")
    record = _record(args)
    mounts = _mounts(args)
    readers = _readers(args, args.for_ or [])
    recipients, hosts = recipients_for(
        rel, mounts, readers, record.host_recipients(), record.operator_recipients
    )
    plaintext = read_plaintext(args.source, path, "")
    add_secret(path, plaintext, recipients)
    print(f"{path}: encrypted to the operator and {len(hosts)} host(s): {' '.join(hosts) or '-'}")
    undeclared = [h for h in hosts if rel not in mounts.get(h, [])]
    if undeclared:
        print(f"note: declare {rel} in the `secrets` of {' '.join(undeclared)} (or their role) "
              f"in {args.inventory or 'inventories/hosts.yaml'}, then run `nixify secrets rules`")
    return 0


def cmd_edit(args: argparse.Namespace) -> int:
    from nixify.secrets.authoring import edit_secret

    path = Path(args.file)
    if edit_secret(path, _identities(args), args.source):
        print(f"{path}: re-encrypted (same recipients, same data key)")
    else:
        print(f"{path}: unchanged")
    return 0


def _register_authoring(sub: Any) -> None:
    ad = sub.add_parser(
        "add",
        help="encrypt a new secret to the operator and the hosts that mount it "
        "(plaintext from $EDITOR in /dev/shm, or stdin with -)",
    )
    ad.add_argument("file", metavar="FILE", help="the new sops file, inside the secrets directory")
    ad.add_argument("source", nargs="?", metavar="-",
                    help="read the plaintext from standard input instead of $EDITOR")
    ad.add_argument("--for", dest="for_", action="append", metavar="ROLE|HOST", required=True,
                    help="who mounts it (repeatable); added to those the fleet declares")
    _common(ad)
    ad.set_defaults(func=cmd_add)

    ed = sub.add_parser(
        "edit",
        help="change a secret in $EDITOR (plaintext only in /dev/shm, 0600, removed after) "
        "or from stdin with -; same recipients and data key",
    )
    ed.add_argument("file", metavar="FILE", help="the sops file")
    ed.add_argument("source", nargs="?", metavar="-",
                    help="read the new plaintext from standard input instead of $EDITOR")
    _identity_arg(ed)
    ed.set_defaults(func=cmd_edit)



def main(argv: Sequence[str] | None = None) -> int:
    """``python -m nixify.secrets.cli`` (same commands, without the other subsystems)."""
    parser = argparse.ArgumentParser(prog="nixify")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args.func(args))
    except NixifyError as exc:
        print(f"nixify: error: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
