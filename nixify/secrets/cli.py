"""``nixify ssh-to-age`` and ``nixify secrets ...``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nixify.errors import ConfigError
from nixify.secrets.keys import find_identities, identities_from_file
from nixify.secrets.sopsfile import SopsFile
from nixify.secrets.ssh_to_age import age_recipients_from_text, private_key_to_age_identity


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
    parser.add_argument("-i", dest="input", metavar="FILE", help="read FILE (default stdin)")
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


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("ssh-to-age", help="SSH ed25519 keys to age recipients/identities")
    _ssh_to_age_args(p)
    p.set_defaults(func=cmd_ssh_to_age)

    sec = subparsers.add_parser("secrets", help="sops/age secrets: decrypt, rules, rekey, audit")
    sub = sec.add_subparsers(dest="secrets_command", metavar="ACTION")
    _register_actions(sub)


def _identity_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--identity",
        action="append",
        metavar="FILE",
        help="age identity file (default: found as sops finds it)",
    )


def _register_actions(sub: Any) -> None:
    d = sub.add_parser("decrypt", help="print a sops file's plaintext, as sops decrypt does")
    d.add_argument("file")
    _identity_arg(d)
    d.set_defaults(func=cmd_decrypt)
