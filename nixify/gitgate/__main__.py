"""``python -m nixify.gitgate COMMAND ...``: the gate's commands without the full CLI.

The pre-push hook calls this, so the push gate imports only what it needs and
keeps working whatever state other subsystems are in.
"""

from __future__ import annotations

import argparse
import sys

from nixify.errors import NixifyError
from nixify.gitgate.cli import register


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m nixify.gitgate")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    register(sub)
    args = parser.parse_args()
    try:
        rc: int = args.func(args)
    except NixifyError as exc:
        print(f"nixify: error: {exc}", file=sys.stderr)
        return exc.exit_code
    return rc


if __name__ == "__main__":
    sys.exit(main())
