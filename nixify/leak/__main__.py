"""``python -m nixify.leak [PATH...]``: the leak-scan command without the full CLI's imports."""

from __future__ import annotations

import argparse
import sys

from nixify.errors import NixifyError
from nixify.leak.cli import register


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m nixify.leak")
    sub = parser.add_subparsers(dest="command")
    register(sub)
    args = parser.parse_args(["leak-scan", *sys.argv[1:]])
    try:
        rc: int = args.func(args)
    except NixifyError as exc:
        print(f"nixify: error: {exc}", file=sys.stderr)
        return exc.exit_code
    return rc


if __name__ == "__main__":
    sys.exit(main())
