"""The `nixify` command line.

Each subsystem registers its own subcommands from its own module: a module named
in ``COMMAND_MODULES`` exposes ``register(subparsers)``, which adds parsers whose
defaults carry ``func`` (``Callable[[argparse.Namespace], int]``). This file only
dispatches, so subsystems never edit each other's code.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from nixify.errors import NixifyError

COMMAND_MODULES: tuple[str, ...] = (
    "nixify.lab.cli",  # nixify lab up|status|down, nixify demo
    "nixify.diff.cli",  # nixify diff
    "nixify.secrets.cli",  # nixify secrets ..., nixify ssh-to-age
    "nixify.leak.cli",  # nixify leak-scan
    "nixify.gitgate.cli",  # nixify hooks|gate|integrate|fixup|worktree
    "nixify.pipeline.cli",  # nixify status|rollback (pipeline / ledger)
    "nixify.cache.cli",  # nixify cache ...
    "nixify.docs.cli",  # nixify docs build
    "nixify.report.cli",  # nixify report
)

# Modules that add subcommands to other modules' commands, with ``extend(commands)``
# (``commands``: what each ``register`` returned, command name -> its subparsers).
# The lab is at the edge: it adds its own set-up steps (``secrets lab-provision``,
# ``cache lab-setup``); no subsystem imports it.
EXTENSION_MODULES: tuple[str, ...] = ("nixify.lab.cli",)

# Each top-level command, in the order the modules register them: its one-line help
# (the words its module registers; tests/test_cli.py checks they agree) and the
# modules that register it. `nixify --help`, no command and an unknown command are
# answered from this table alone, importing no subsystem; `nixify CMD ...` loads only
# CMD's modules (start-up time counts: bench/startup.py). A module that fails to
# import fails the command loudly: never hidden.
COMMANDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "lab": ("a real multi-host lab on this machine (root)", ("nixify.lab.cli",)),
    "demo": ("lab up, then the main job (deploy) on the lab", ("nixify.lab.cli",)),
    "diff": (
        "compare two closures: versions, sizes, and (--rca) the root causes",
        ("nixify.diff.cli",),
    ),
    "ssh-to-age": ("SSH ed25519 keys to age recipients/identities", ("nixify.secrets.cli",)),
    "secrets": (
        "sops/age secrets: decrypt, rules, rekey, audit",
        ("nixify.secrets.cli", "nixify.lab.cli"),
    ),
    "leak-scan": (
        "find host addresses, age keys, SSH keys and private-key blocks",
        ("nixify.leak.cli",),
    ),
    "hooks": ("install the git hooks of the single gate", ("nixify.gitgate.cli",)),
    "gate": ("run one step of the git gate (what the hooks call)", ("nixify.gitgate.cli",)),
    "integrate": (
        "fast-forward an operator branch to BRANCH (operator only)",
        ("nixify.gitgate.cli",),
    ),
    "fixup": (
        "fix COMMIT where it was introduced: record the staged change as fixup! and fold "
        "it in (own branch only)",
        ("nixify.gitgate.cli",),
    ),
    "worktree": ("per-agent work trees and handoff notes", ("nixify.gitgate.cli",)),
    "status": (
        "per host: running and booted closures, newest known-good pin, tag, drift",
        ("nixify.pipeline.cli",),
    ),
    "rollback": (
        "redeploy a known-good closure from the hosts' pins (no build)",
        ("nixify.pipeline.cli",),
    ),
    "plan": (
        "gates 1-3 on every selected host, nothing activated: changes grouped by cause",
        ("nixify.pipeline.cli",),
    ),
    "cache": (
        "the fleet's signed binary cache: warm, keygen, ...",
        ("nixify.cache.cli", "nixify.lab.cli"),
    ),
    "docs": ("the project's documentation: build the static site", ("nixify.docs.cli",)),
    "report": (
        "the fleet as one self-contained HTML page (runs, status, diff, secrets)",
        ("nixify.report.cli",),
    ),
}

# Each top-level command and the modules that register it (the dispatch half of
# ``COMMANDS``).
FAST_COMMANDS: dict[str, tuple[str, ...]] = {
    name: modules for name, (_, modules) in COMMANDS.items()
}

DESCRIPTION = "Deploy and validate a NixOS fleet declared by role."


def index_parser() -> argparse.ArgumentParser:
    """The top-level parser from ``COMMANDS`` alone: every command with its help,
    no subsystem imported (what `nixify --help` prints)."""
    parser = argparse.ArgumentParser(prog="nixify", description=DESCRIPTION)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (help_text, _) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def build_parser(only: Sequence[str] | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nixify", description=DESCRIPTION)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands: dict[str, object] = {}
    modules = [importlib.import_module(name) for name in (only or COMMAND_MODULES)]
    for module in modules:
        commands.update(module.register(sub) or {})
    for module in modules:
        if module.__name__ in EXTENSION_MODULES:
            module.extend(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    modules = FAST_COMMANDS.get(words[0]) if words else None
    parser = build_parser(modules) if modules else index_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        rc: int = func(args)
    except NixifyError as exc:
        print(f"nixify: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("nixify: interrupted", file=sys.stderr)
        return 130
    return rc


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
