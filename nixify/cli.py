"""The `nixify` command line.

Each subsystem registers its own subcommands from its own module: a module named
in ``COMMAND_MODULES`` exposes ``register(subparsers)``, which adds parsers whose
defaults carry ``func`` (``Callable[[argparse.Namespace], int]``). This file only
dispatches, so subsystems never edit each other's code.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
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
)


def _module_present(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


# Each top-level command and the module that registers it: a command line loads
# only its own module (startup time counts, and one subsystem's import error
# never breaks another's command); help and unknown commands load them all.
FAST_COMMANDS: dict[str, str] = {
    "lab": "nixify.lab.cli",
    "demo": "nixify.lab.cli",
    "diff": "nixify.diff.cli",
    "secrets": "nixify.secrets.cli",
    "ssh-to-age": "nixify.secrets.cli",
    "leak-scan": "nixify.leak.cli",
    "hooks": "nixify.gitgate.cli",
    "gate": "nixify.gitgate.cli",
    "integrate": "nixify.gitgate.cli",
    "fixup": "nixify.gitgate.cli",
    "worktree": "nixify.gitgate.cli",
    "status": "nixify.pipeline.cli",
    "rollback": "nixify.pipeline.cli",
    "cache": "nixify.cache.cli",
}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nixify",
        description="Deploy and validate a NixOS fleet declared by role.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in (only,) if only else COMMAND_MODULES:
        if not _module_present(name):
            continue
        module = importlib.import_module(name)
        module.register(sub)
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
