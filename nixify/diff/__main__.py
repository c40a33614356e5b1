"""``python -m nixify.diff OLD NEW ...``: ``nixify diff`` without the dispatcher.

The ``nixify`` dispatcher imports every subsystem's command module to build its
parser; this entry point loads only the diff.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from nixify.diff.cli import register
from nixify.errors import NixifyError


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nixify")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["diff", *(sys.argv[1:] if argv is None else argv)])
    try:
        rc: int = args.func(args)
    except NixifyError as exc:
        print(f"nixify: error: {exc}", file=sys.stderr)
        return exc.exit_code
    return rc


if __name__ == "__main__":
    sys.exit(main())
