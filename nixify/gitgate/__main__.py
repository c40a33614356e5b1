"""``python -m nixify.gitgate COMMAND ...``: the gate's commands (hooks, gate,
integrate, worktree). The pre-push hook calls this; the dispatcher loads only
the git gate's module, so the push gate works whatever state other subsystems
are in."""

from __future__ import annotations

import sys

from nixify.cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
