"""``python -m nixify.diff OLD NEW ...``: ``nixify diff`` (loads only the diff)."""

from __future__ import annotations

import sys

from nixify.cli import main

if __name__ == "__main__":
    sys.exit(main(["diff", *sys.argv[1:]]))
