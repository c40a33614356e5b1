"""``python -m nixify.leak [PATH...]``: ``nixify leak-scan`` (loads only the leak gate)."""

from __future__ import annotations

import sys

from nixify.cli import main

if __name__ == "__main__":
    sys.exit(main(["leak-scan", *sys.argv[1:]]))
