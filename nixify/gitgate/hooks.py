"""``nixify hooks install|uninstall``: native git hooks that call the single gate.

Writes ``nixify-gate`` (the policy script) and three thin hooks (pre-commit,
commit-msg, pre-push) into the repository's hooks directory (``git rev-parse
--git-path hooks``: honours ``core.hooksPath`` and is shared by worktrees).
Each hook carries a marker line; a hook with the marker is nixify's and is
rewritten in place (idempotent), a hook without it is foreign and is only
replaced with ``--force``, after being kept as ``<hook>.pre-nixify``.

``--server DIR`` installs the backstop instead: a ``pre-receive`` hook in the
bare repository DIR that runs ``nixify gate pre-receive`` (the checks of
``nixify gate verify`` for every updated ref), calling the nixify that
installed it by absolute path. ``uninstall`` removes only files carrying the
marker and puts a kept ``.pre-nixify`` hook back in its place.
"""

from __future__ import annotations

import os
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

from nixify.errors import ConfigError
from nixify.gitgate.git import git
from nixify.gitgate.policy import GATE_SCRIPT_NAME, gate_script_text
from nixify.util import atomic_write

MARKER = "# managed-by: nixify hooks install"
HOOKS: tuple[str, ...] = ("pre-commit", "commit-msg", "pre-push")
SERVER_HOOKS: tuple[str, ...] = ("pre-receive",)


def default_nixify_cmd() -> str:
    """How the pre-push gate calls nixify: this interpreter, this package."""
    return f"{shlex.quote(sys.executable)} -m nixify.gitgate"


def hook_text(hook: str, nixify_cmd: str) -> str:
    lines = [
        "#!/bin/sh",
        MARKER,
        "# The policy lives in nixify-gate beside this file; re-run `nixify hooks install`",
        "# to update. Bypassing it (--no-verify) is not part of the workflow.",
    ]
    if hook == "pre-receive":
        lines += [
            "# Server side: the backstop --no-verify cannot skip (nixify gate pre-receive).",
            f"exec {nixify_cmd} gate pre-receive",
        ]
        return "\n".join(lines) + "\n"
    if hook in ("pre-push", "pre-commit"):
        lines += [f"NIXIFY_CMD={shlex.quote(nixify_cmd)}", "export NIXIFY_CMD"]
    lines.append(f'exec sh "${{0%/*}}/{GATE_SCRIPT_NAME}" {hook} "$@"')
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class HookAction:
    path: Path
    action: str  # "created", "updated", "unchanged", "replaced (kept as ...)"


def hooks_dir(repo: Path) -> Path:
    path = Path(git(repo, "rev-parse", "--git-path", "hooks"))
    return path if path.is_absolute() else (repo / path)


def _write(path: Path, text: str) -> None:
    atomic_write(path, text, mode=0o755)


def install_hooks(
    repo: Path, *, force: bool = False, nixify_cmd: str | None = None, server: bool = False
) -> list[HookAction]:
    """Install (or update) the gate's hooks; refuse foreign hooks unless ``force``.

    ``server``: ``repo`` is a bare repository; install the pre-receive backstop only.
    """
    if server and git(repo, "rev-parse", "--is-bare-repository") != "true":
        raise ConfigError(f"{repo}: not a bare repository (--server installs pre-receive "
                          "into the repository that receives pushes)")
    directory = hooks_dir(repo)
    directory.mkdir(parents=True, exist_ok=True)
    cmd = nixify_cmd or default_nixify_cmd()
    wanted: dict[str, str] = {}
    if server:
        wanted.update({h: hook_text(h, cmd) for h in SERVER_HOOKS})
    else:
        wanted[GATE_SCRIPT_NAME] = gate_script_text()
        wanted.update({h: hook_text(h, cmd) for h in HOOKS})
    foreign = [
        directory / name
        for name in wanted
        if (directory / name).exists()
        and MARKER not in (directory / name).read_text(errors="replace")
    ]
    if foreign and not force:
        names = ", ".join(str(p) for p in foreign)
        raise ConfigError(
            f"{names}: existing hook(s) not written by nixify; refusing to overwrite "
            "(use --force: the old hook is kept as <hook>.pre-nixify)"
        )
    actions = []
    for name, text in wanted.items():
        path = directory / name
        if not path.exists():
            _write(path, text)
            actions.append(HookAction(path, "created"))
            continue
        old = path.read_text(errors="replace")
        if old == text and os.access(path, os.X_OK):
            actions.append(HookAction(path, "unchanged"))
            continue
        if path in foreign:
            backup = path.with_name(path.name + ".pre-nixify")
            n = 1
            while backup.exists():  # never overwrite an earlier backup
                backup = path.with_name(f"{path.name}.pre-nixify.{n}")
                n += 1
            path.replace(backup)
            _write(path, text)
            actions.append(HookAction(path, f"replaced (foreign hook kept as {backup.name})"))
            continue
        _write(path, text)
        actions.append(HookAction(path, "updated"))
    return actions


def uninstall_hooks(repo: Path) -> list[HookAction]:
    """Remove nixify's hooks (marker line) only; restore a kept ``.pre-nixify`` hook."""
    directory = hooks_dir(repo)
    actions: list[HookAction] = []
    for name in (GATE_SCRIPT_NAME, *HOOKS, *SERVER_HOOKS):
        path = directory / name
        if not path.is_file():
            continue
        if MARKER not in path.read_text(errors="replace"):
            actions.append(HookAction(path, "kept (not nixify's)"))
            continue
        path.unlink()
        backup = path.with_name(name + ".pre-nixify")
        if backup.is_file():
            backup.replace(path)
            actions.append(HookAction(path, f"removed; restored {backup.name}"))
        else:
            actions.append(HookAction(path, "removed"))
    return actions
