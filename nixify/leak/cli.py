"""``nixify leak-scan``: the leak gate's command.

Exit status: 0 clean, 1 findings, 2 bad input (unreadable allowlist, missing
path). Human output is one line per finding (path:line:column: kind:
redacted [fingerprint]); ``--json`` prints one JSON document instead. Matched
values are never printed in full.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from nixify.errors import ConfigError
from nixify.leak.allowlist import ALLOWLIST_NAME, Allowlist, load_allowlist
from nixify.leak.history import scan_history
from nixify.leak.scanner import Finding, git_toplevel, scan_paths


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "leak-scan",
        help="find host addresses, age keys, SSH keys and private-key blocks",
        description=(
            "Scan files (in a git work tree: tracked plus untracked-not-ignored) or, "
            "with --history, every blob in the git history, for private/Tailscale "
            "addresses, age recipients and identities, SSH public-key blobs and "
            "private-key blocks. Exit 1 on findings."
        ),
    )
    p.add_argument("paths", nargs="*", metavar="PATH", default=["."])
    p.add_argument("--history", action="store_true", help="scan every blob of the git history")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument(
        "--allowlist",
        type=Path,
        default=None,
        help=f"allowlist file (default: {ALLOWLIST_NAME} at the root of the scanned tree)",
    )
    p.add_argument("--jobs", type=int, default=None, help="worker processes (default: CPUs)")
    p.set_defaults(func=run)


def _root(path: Path) -> Path:
    top = git_toplevel(path)
    if top is not None:
        return top
    return path if path.is_dir() else path.parent


def _allowlist(args: argparse.Namespace, root: Path) -> Allowlist:
    if args.allowlist is not None:
        return load_allowlist(args.allowlist, root)
    default = root / ALLOWLIST_NAME
    return load_allowlist(default if default.is_file() else None, root)


def run(args: argparse.Namespace) -> int:
    paths = [Path(p) for p in args.paths]
    for p in paths:
        if not p.exists():
            raise ConfigError(f"{p}: no such file or directory")
    root = _root(paths[0])
    allowlist = _allowlist(args, root)
    if args.history:
        if git_toplevel(paths[0]) is None:
            raise ConfigError(f"{paths[0]}: --history needs a git repository")
        found = scan_history(root)
    else:
        found = scan_paths(paths, args.jobs)
    findings: list[Finding] = []
    allowed = 0
    for f in found:
        if allowlist.allows(f):
            allowed += 1
        else:
            findings.append(f)
    unused = allowlist.unused()
    if args.json:
        doc = {
            "findings": [f.as_dict() for f in findings],
            "allowed": allowed,
            "unused_allowlist_entries": [
                {"line": e.lineno, "glob": e.glob, "kind": e.kind, "fingerprint": e.fingerprint}
                for e in unused
            ],
        }
        print(json.dumps(doc, indent=2))
    else:
        for f in findings:
            print(f.render())
        for e in unused:
            print(
                f"leak-scan: warning: {allowlist.source}:{e.lineno}: entry matched nothing",
                file=sys.stderr,
            )
        files = len({(f.commit, f.path) for f in findings})
        mode = "history" if args.history else "tree"
        if findings:
            print(
                f"leak-scan: {len(findings)} finding(s) in {files} file(s) ({mode}); "
                f"{allowed} allowlisted",
                file=sys.stderr,
            )
        else:
            print(f"leak-scan: clean ({mode}); {allowed} allowlisted", file=sys.stderr)
    return 1 if findings else 0
