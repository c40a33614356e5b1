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

# Each top-level command and the modules that register it: a command line loads
# only its own modules (startup time counts); help and unknown commands load them
# all. A module that fails to import fails the command loudly: never hidden.
FAST_COMMANDS: dict[str, tuple[str, ...]] = {
    "lab": ("nixify.lab.cli",),
    "demo": ("nixify.lab.cli",),
    "diff": ("nixify.diff.cli",),
    "secrets": ("nixify.secrets.cli", "nixify.lab.cli"),
    "ssh-to-age": ("nixify.secrets.cli",),
    "leak-scan": ("nixify.leak.cli",),
    "hooks": ("nixify.gitgate.cli",),
    "gate": ("nixify.gitgate.cli",),
    "integrate": ("nixify.gitgate.cli",),
    "fixup": ("nixify.gitgate.cli",),
    "worktree": ("nixify.gitgate.cli",),
    "status": ("nixify.pipeline.cli",),
    "rollback": ("nixify.pipeline.cli",),
    "cache": ("nixify.cache.cli", "nixify.lab.cli"),
    "docs": ("nixify.docs.cli",),
    "report": ("nixify.report.cli",),
}


def build_parser(only: Sequence[str] | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nixify",
        description="Deploy and validate a NixOS fleet declared by role.",
    )
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
    parser = build_parser(FAST_COMMANDS.get(words[0]) if words else None)
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
