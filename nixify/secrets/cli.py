"""``nixify ssh-to-age`` and ``nixify secrets ...``."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nixify.errors import ConfigError, NixifyError
from nixify.inventory import ADDRESSES_ENV, load_fleet
from nixify.inventory.connect import DEFAULT_SOPS_ADDRESSES
from nixify.inventory.hostkeys import (
    SCAN_TIMEOUT,
    ScannedKey,
    canonical_key,
    fingerprint,
    host_pattern,
    scan_host_key,
    write_pinned_known_hosts,
)
from nixify.inventory.listing import list_inventory
from nixify.paths import repo_root
from nixify.secrets.audit import (
    AuditReport,
    audit,
    mounts_from_fleet,
    stale_mounts,
    verify_files,
)
from nixify.secrets.host_rotation import (
    is_generated_known_hosts,
    live_keys,
    update_address_map,
    update_builders,
    update_known_hosts_file,
)
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
from nixify.secrets.sopsfile import SopsError, SopsFile
from nixify.secrets.ssh_to_age import (
    age_recipients_from_text,
    private_key_to_age_identity,
    recipient_of_public_line,
)
from nixify.util import atomic_write

INVENTORY_ENV = "NIXIFY_INVENTORY"
FLEET_INVENTORY = "inventories/fleet.py"


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


def _key_inventory(args: argparse.Namespace) -> str | None:
    """The pyinfra inventory that reaches the hosts, to read their keys live: the
    option, else ``$NIXIFY_INVENTORY``, else the real fleet's when its address map
    is there; None: only the recorded keys can be compared."""
    if getattr(args, "offline", False):
        return None
    chosen = args.ssh_inventory or os.environ.get(INVENTORY_ENV)
    if chosen:
        return str(chosen)
    if os.environ.get(ADDRESSES_ENV) or DEFAULT_SOPS_ADDRESSES.exists():
        return FLEET_INVENTORY
    return None


def _inventory_data(inventory: str) -> dict[str, dict[str, Any]]:
    return {h.name: h.data for h in list_inventory(inventory, repo_root())}


def _stale(secrets_dir: Path, host: str, recipient: str, files: list[str]) -> list[str]:
    """The files of ``files`` not keyed to ``recipient`` (one that does not parse is
    named by the file checks, not counted here)."""
    out = []
    for rel in files:
        try:
            out += stale_mounts(secrets_dir, host, recipient, [rel])
        except SopsError:
            continue
    return out


def _host_key_lines(
    args: argparse.Namespace,
    record: RecipientsRecord,
    mounts: dict[str, list[str]],
    secrets_dir: Path,
    report: AuditReport,
) -> tuple[list[str], set[str], list[str], str]:
    """One line per host whose key needs attention: (failing lines, the hosts they
    cover, lines about hosts not checked, how keys were compared)."""
    inventory = _key_inventory(args)
    names = sorted(set(record.hosts) | {h for h, files in mounts.items() if files})
    live: dict[str, ScannedKey] = {}
    data: dict[str, dict[str, Any]] = {}
    fallback = ""
    if inventory is not None:
        try:
            data = _inventory_data(inventory)
        except ConfigError as exc:
            if args.ssh_inventory or os.environ.get(INVENTORY_ENV):
                raise  # asked for: its failure is the answer
            fallback, inventory = f" ({exc})", None
    if inventory is not None:
        live = live_keys({n: data[n] for n in names if n in data}, args.timeout)
    failing: list[str] = []
    flagged: set[str] = set()
    unchecked: list[str] = []
    for name in names:
        rec = record.hosts.get(name)
        files = [f for f in mounts.get(name, []) if (secrets_dir / f).is_file()]
        fix = f"run `nixify secrets rotate-host {name}`"
        scanned = live.get(name)
        if scanned is not None and scanned.key is not None:
            if rec is None or " ".join(rec.ssh_host_key.split()[:2]) != scanned.key:
                age = recipient_of_public_line(scanned.key, where=name)
                stale = _stale(secrets_dir, name, age, files)
                what = (
                    "no host key recorded"
                    if rec is None
                    else "host key changed since it was recorded (rebuilt?)"
                )
                failing.append(
                    f"{name}: {what}: it presents {fingerprint(scanned.key)}; "
                    f"{len(stale)} of its {len(files)} files to rekey: {fix}"
                )
                flagged.add(name)
                continue
        elif inventory is not None:
            why = scanned.error if scanned is not None else f"not in {inventory}"
            unchecked.append(f"{name}: did not answer ({why}): its key was not checked live")
        if rec is None:
            if files:
                failing.append(f"{name}: no host key recorded; {len(files)} files it mounts "
                               f"are keyed to no key of it: {fix}")
                flagged.add(name)
            continue
        stale = _stale(secrets_dir, name, rec.age, files)
        old = [f for f in report.files if set(f.recipients) & set(rec.previous)]
        if old:  # files still keyed to an earlier key of the host: it was rebuilt
            failing.append(f"{name}: host key changed since its secrets were keyed: "
                           f"{len(stale)} of its {len(files)} files to rekey: {fix}")
            flagged.add(name)
    if inventory is None:
        how = (
            f"host keys: compared with the recorded ones ({secrets_dir / RECORD_NAME}) only; "
            f"to read them live give --ssh-inventory INVENTORY (or ${INVENTORY_ENV}){fallback}"
        )
    else:
        reached = sum(1 for k in live.values() if k.key)
        how = f"host keys: {reached} of {len(names)} read live through {inventory}"
    return failing, flagged, unchecked, how


def _rules_explained(
    config: Path, desired: str, record: RecipientsRecord, hosts: set[str]
) -> bool:
    """The written rules differ from ``desired`` only by the old keys of ``hosts``."""
    if not config.exists():
        return False
    text = config.read_text()
    for name in hosts:
        h = record.hosts.get(name)
        for old in h.previous if h else ():
            text = text.replace(old, h.age if h else old)
    return text == desired


def cmd_check(args: argparse.Namespace) -> int:
    record = _record(args)
    secrets_dir = Path(args.secrets_dir)
    mounts = _mounts(args)
    problems = _missing_mounted_files(args, secrets_dir, mounts)
    config = secrets_dir / CONFIG_NAME
    rules = _desired_rules(secrets_dir, mounts, record)
    report = audit(secrets_dir, record, mounts, config, rules=as_loaded(rules))
    failing, flagged, unchecked, how = _host_key_lines(args, record, mounts, secrets_dir, report)
    desired = render_sops_yaml(rules)
    current = config.read_text() if config.exists() else None
    if current != desired and not _rules_explained(config, desired, record, flagged):
        problems.append(f"{config}: out of date with the inventory and host keys (run rules)")
    explained = {p for h in flagged for p in report.by_host.get(h, ())}
    rest = [p for p in report.problems if p not in explained]
    problems.extend(rest)
    problems.extend(_verify_check(args, secrets_dir, report.problems))
    for line in failing + unchecked + problems:
        print(line)
    if rest and report.needs_rekey:
        print("needs rekey: " + " ".join(report.needs_rekey))
    print(how)
    if not problems and not failing:
        print(f"ok: {len(report.files)} files keyed to their rules")
    return 1 if problems or failing else 0


def _read_key(args: argparse.Namespace, name: str) -> str | None:
    if not args.key:
        return None
    text = _read_input(args.key, binary=False)
    return canonical_key(text.strip(), f"--key {args.key}")


def cmd_rotate_host(args: argparse.Namespace) -> int:
    """After HOST was reinstalled: its new key everywhere nixify keeps one."""
    name = args.host
    secrets_dir = Path(args.secrets_dir)
    inventory = _key_inventory(args)
    data = _inventory_data(inventory) if inventory else {}
    given = _read_key(args, name)
    where = data.get(name)
    scanned = scan_host_key(
        str(where.get("ssh_hostname") or name), int(where.get("ssh_port") or 22), args.timeout
    ) if where else None
    if scanned is not None and scanned.key and given and scanned.key != given:
        raise ConfigError(
            f"{name}: presents {fingerprint(scanned.key)}, but --key says {fingerprint(given)}: "
            "refusing (is this the reinstalled host?)"
        )
    key = given or (scanned.key if scanned else None)
    if key is None:
        why = scanned.error if scanned else f"not in the inventory {inventory or '(none given)'}"
        raise ConfigError(f"{name}: cannot read its new key ({why}); give it with --key FILE")
    address = where.get("ssh_hostname") if where else name
    source = "given with --key" if given else f"read from {address}"
    print(f"{name}: new host key {fingerprint(key)} ({source}"
          f"{', and the host presents it' if given and scanned and scanned.key else ''})")
    ok = True
    # 1. the recipients record
    record_path = secrets_dir / RECORD_NAME
    record = RecipientsRecord.load(record_path)
    change = record.set_host_key(name, key)
    record.save(record_path)
    print(f"{record_path}: {name}'s key {change or 'already recorded'}")
    # 2. the rules
    mounts = _mounts(args)
    rules = _desired_rules(secrets_dir, mounts, record)
    config = secrets_dir / CONFIG_NAME
    text = render_sops_yaml(rules)
    if not config.exists() or config.read_text() != text:
        atomic_write(config, text.encode())
        print(f"{config}: rules rewritten")
    # 3. the files it mounts
    files = [secrets_dir / f for f in mounts.get(name, []) if (secrets_dir / f).is_file()]
    if files:
        rep = rekey_paths(files, config=config,
                          identity_files=[Path(f) for f in args.identity or []])
        for r in rep.results:
            if r.status == "error":
                print(f"error {r.relpath}: {r.error}", file=sys.stderr)
        print(f"{len(files)} files {name} mounts: {rep.count('rekeyed')} rekeyed, "
              f"{rep.count('unchanged')} unchanged, {rep.count('error')} errors")
        ok = ok and rep.ok
    # 4. the address map's pinned key (the real fleet)
    amap = Path(args.address_map) if args.address_map else (
        Path(os.environ[ADDRESSES_ENV]) if os.environ.get(ADDRESSES_ENV)
        else DEFAULT_SOPS_ADDRESSES if DEFAULT_SOPS_ADDRESSES.exists() else None
    )
    if amap is not None and amap.exists():
        said = update_address_map(amap, name, key, [Path(f) for f in args.identity or []])
        print(said or f"{amap}: {name}'s host_key already current (or not pinned there)")
    # 5. the operator's known_hosts (the lab's, or the map's known_hosts_file)
    if where is not None:
        pattern = host_pattern(str(where.get("ssh_hostname") or name),
                               int(where.get("ssh_port") or 22))
        known = where.get("ssh_known_hosts_file")
        if known and not is_generated_known_hosts(str(known)):
            changed = update_known_hosts_file(Path(known), [name, pattern], key, pattern)
            print(f"{known}: {'updated' if changed else 'already pins it'} for {name}")
        elif known:  # a file derived from pinned keys: the rotated host gets a fresh one
            data[name] = {**where, "ssh_known_hosts_file": str(write_pinned_known_hosts(
                {pattern: key}))}
    # 6. every builder's known_hosts (builders copy closures to the hosts)
    if data and name in data:
        for step in update_builders(name, key, data):
            print(step.what)
            ok = ok and step.ok
    elif not data:
        print("note: no inventory to reach the builders: their known_hosts were not updated "
              f"(give --ssh-inventory INVENTORY or ${INVENTORY_ENV})")
        ok = False
    print(f"{name}: {'rotated' if ok else 'NOT fully rotated (run again once fixed)'}")
    return 0 if ok else 1


def _common(p: argparse.ArgumentParser, mounts: bool = True) -> None:
    p.add_argument("--secrets-dir", default="secrets", help="the secrets directory (secrets/)")
    if mounts:
        _hosts_file_arg(p, "the fleet declaration whose hosts' `secrets` say who mounts what")
        p.add_argument("--mounts", metavar="FILE",
                       help="YAML host -> [files] instead of the fleet declaration")


def _reach_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--ssh-inventory", metavar="INVENTORY",
        help=f"the pyinfra inventory that reaches the hosts (default ${INVENTORY_ENV}, else "
        f"{FLEET_INVENTORY} when its address map is there)",
    )
    p.add_argument("--timeout", type=int, default=SCAN_TIMEOUT, metavar="SECONDS",
                   help=f"how long a host may take to answer (default {SCAN_TIMEOUT})")


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
        help="report hosts whose key changed (read live), corrupt or missing files and "
        "files needing a rekey; one line per host",
    )
    _common(k)
    _identity_arg(k)
    _reach_args(k)
    k.add_argument("--offline", action="store_true",
                   help="compare with the recorded keys only; reach no host")
    k.set_defaults(func=cmd_check)

    rh = sub.add_parser(
        "rotate-host",
        help="after HOST was reinstalled: record its new key, rewrite the rules, rekey its "
        "files, update the address map and every known_hosts nixify uses (operator, builders)",
    )
    rh.add_argument("host", metavar="HOST", help="the reinstalled host")
    _common(rh)
    _identity_arg(rh)
    _reach_args(rh)
    rh.add_argument("--key", metavar="FILE",
                    help="its new public key (checked out of band; - for stdin); must match "
                    "what the host presents when it answers")
    rh.add_argument("--address-map", metavar="FILE",
                    help=f"the address map whose host_key to update (default ${ADDRESSES_ENV}, "
                    f"else {DEFAULT_SOPS_ADDRESSES} when present)")
    rh.set_defaults(func=cmd_rotate_host)

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
