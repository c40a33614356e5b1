#!/usr/bin/env python3
"""Set up a system's secrets during its activation, as sops-nix does (on the host).

Standard library only, no nixify imports: it ships in the host's system closure
(with ``host_identity.py`` and the ``sops`` binary) and the system's own
``switch-to-configuration`` runs it, before any unit is (re)started.

    host_activation.py --sops SOPS --key-cmd CMD dry-activate|activate SOURCE

``SOURCE`` is what the operator uploaded for this system,
``/var/lib/nixify/secrets/by-closure/<basename of the system>/``:
``manifest.json`` (``{"files": [{"file", "mode", "owner", "group"}]}``) and the
encrypted files under ``files/<file>``. No such directory: no secrets (exit 0).

* ``dry-activate`` decrypts every file to nowhere with this host's key and
  names each one that does not open; exit 1 if any.
* ``activate`` decrypts every file into a new generation ``/run/secrets.d/N``
  (made as ``N.tmp``, renamed when complete), with the declared mode and owner,
  then points ``/run/secrets`` at it by an atomic symlink rename; generations
  older than the previous one are removed. On any failure nothing is switched
  and it exits 1.

sops gets the host's age identity from ``SOPS_AGE_KEY_CMD`` (``--key-cmd``: the
ssh-to-age helper reading ``/etc/ssh/ssh_host_ed25519_key``), so the identity is
never written anywhere. Output names paths and counts only, never a value.
"""

from __future__ import annotations

import argparse
import grp
import json
import os
import pwd
import shutil
import subprocess
import sys
from pathlib import PurePosixPath

LINK = "/run/secrets"
GENERATIONS = "/run/secrets.d"
MANIFEST = "manifest.json"
FILES = "files"


class ActivationError(Exception):
    """A reason to stop before anything is switched (names the file, never a value)."""


class Entry:
    def __init__(self, relpath: str, mode: int, uid: int, gid: int) -> None:
        self.relpath, self.mode, self.uid, self.gid = relpath, mode, uid, gid


def _uid(owner: str) -> int:
    try:
        return int(owner) if owner.isdigit() else pwd.getpwnam(owner).pw_uid
    except KeyError:
        raise ActivationError(f"unknown owner {owner!r}") from None


def _gid(group: str) -> int:
    try:
        return int(group) if group.isdigit() else grp.getgrnam(group).gr_gid
    except KeyError:
        raise ActivationError(f"unknown group {group!r}") from None


def read_manifest(source: str) -> list[Entry]:
    """The manifest's files, checked: relative paths, octal modes, known owners."""
    path = os.path.join(source, MANIFEST)
    try:
        with open(path) as fh:
            doc = json.load(fh)
    except (OSError, ValueError) as exc:
        raise ActivationError(f"{path}: unreadable manifest ({exc})") from None
    files = doc.get("files") if isinstance(doc, dict) else None
    if not isinstance(files, list):
        raise ActivationError(f"{path}: no 'files' list")
    entries, seen = [], set()
    for i, item in enumerate(files):
        where = f"{path}: files[{i}]"
        if not isinstance(item, dict) or not isinstance(item.get("file"), str):
            raise ActivationError(f"{where}: needs a 'file'")
        rel = PurePosixPath(item["file"])
        if rel.is_absolute() or not rel.parts or any(p in ("..", ".") for p in rel.parts):
            raise ActivationError(f"{where}: {item['file']!r} must be a relative path")
        if rel.as_posix() in seen:
            raise ActivationError(f"{where}: {rel} listed twice")
        seen.add(rel.as_posix())
        mode_text = str(item.get("mode", "0400"))
        try:
            mode = int(mode_text, 8)
        except ValueError:
            raise ActivationError(f"{where}: mode {mode_text!r} is not octal") from None
        if not 0 <= mode <= 0o7777:
            raise ActivationError(f"{where}: mode {mode_text!r} out of range")
        try:
            uid = _uid(str(item.get("owner", "root")))
            gid = _gid(str(item.get("group", "root")))
        except ActivationError as exc:
            raise ActivationError(f"{where} ({rel}): {exc}") from None
        entries.append(Entry(rel.as_posix(), mode, uid, gid))
    return entries


def _decrypt(sops: str, key_cmd: str, src: str, out: int) -> bool:
    fmt = "json" if src.endswith(".json") else "yaml"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOPS_")}
    env["SOPS_AGE_KEY_CMD"] = key_cmd
    env.setdefault("HOME", "/root")
    proc = subprocess.run(
        [sops, "decrypt", "--input-type", fmt, "--output-type", fmt, src],
        stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.DEVNULL, env=env,
    )
    return proc.returncode == 0


def _numbered(directory: str) -> list[int]:
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    return sorted(int(n) for n in names if n.isdigit())


def dry_activate(source: str, files: str, sops: str, key_cmd: str) -> int:
    entries = read_manifest(source)
    bad = []
    with open(os.devnull, "wb") as null:
        for e in entries:
            if not _decrypt(sops, key_cmd, os.path.join(files, e.relpath), null.fileno()):
                bad.append(e.relpath)
    for rel in bad:
        print(f"secrets: cannot decrypt {rel} with this host's key", file=sys.stderr)
    if bad:
        return 1
    print(f"secrets: {len(entries)} file(s) decrypt with this host's key")
    return 0


def activate(source: str, files: str, sops: str, key_cmd: str, link: str, gens: str) -> int:
    entries = read_manifest(source)
    os.makedirs(gens, exist_ok=True)
    os.chmod(gens, 0o751)
    existing = _numbered(gens)
    n = existing[-1] + 1 if existing else 0
    gen = os.path.join(gens, str(n))
    tmp = gen + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.mkdir(tmp)
    os.chmod(tmp, 0o751)  # traversable, so a file declared for another owner is readable
    try:
        for e in entries:
            target = os.path.join(tmp, e.relpath)
            for parent in reversed(PurePosixPath(e.relpath).parents):
                if str(parent) != ".":
                    os.makedirs(os.path.join(tmp, str(parent)), exist_ok=True)
                    os.chmod(os.path.join(tmp, str(parent)), 0o751)
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
            try:
                ok = _decrypt(sops, key_cmd, os.path.join(files, e.relpath), fd)
                os.fchown(fd, e.uid, e.gid)
                os.fchmod(fd, e.mode)
                os.fsync(fd)
            finally:
                os.close(fd)
            if not ok:
                raise ActivationError(f"cannot decrypt {e.relpath} with this host's key")
    except (ActivationError, OSError) as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        print(f"secrets: {exc}; {link} not switched", file=sys.stderr)
        return 1
    os.rename(tmp, gen)
    new = link + ".new"
    if os.path.lexists(new):
        os.unlink(new)
    os.symlink(gen, new)
    os.replace(new, link)
    for old in _numbered(gens):
        if old < n - 1:
            shutil.rmtree(os.path.join(gens, str(old)), ignore_errors=True)
    for name in os.listdir(gens):
        if name.endswith(".tmp"):
            shutil.rmtree(os.path.join(gens, name), ignore_errors=True)
    print(f"secrets: {len(entries)} file(s) in {gen}; {link} -> {gen}")
    return 0


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="host_activation.py")
    ap.add_argument("--sops", required=True, help="the sops binary (of this system)")
    ap.add_argument("--key-cmd", required=True, help="prints the host's age identity")
    ap.add_argument("--files", help="the encrypted files (default SOURCE/files)")
    ap.add_argument("--link", default=LINK)
    ap.add_argument("--generations", default=GENERATIONS)
    ap.add_argument("action", choices=("dry-activate", "activate"))
    ap.add_argument("source", help="the system's by-closure directory")
    args = ap.parse_args(argv[1:])
    if not os.path.isdir(args.source):
        return 0  # this system mounts no secrets
    try:
        files = args.files or os.path.join(args.source, FILES)
        if args.action == "dry-activate":
            return dry_activate(args.source, files, args.sops, args.key_cmd)
        os.umask(0o077)
        return activate(args.source, files, args.sops, args.key_cmd, args.link, args.generations)
    except ActivationError as exc:
        print(f"secrets: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
