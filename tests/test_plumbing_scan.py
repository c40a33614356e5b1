"""One of each plumbing helper (issue 11 item 6): only ``nixify/git.py`` starts git,
only ``nixify/util.py`` renames a temp file over a local file (``atomic_write``).

Every .py file of ``nixify/`` and ``operations/`` is parsed with ``ast``:

* a git process: an argv whose first element is ``git`` (``["git", ...]``,
  ``("git", ...)``, a path ending in ``/git``) anywhere, or a call whose first
  argument is a string starting ``git `` (a shell command line);
* a rename into place: ``os.replace``/``os.rename`` (also ``from os import
  replace``) and a one-argument ``.replace(x)``/``.rename(x)`` (``Path``'s;
  ``str.replace`` takes two).

``nixify/transport/`` writes on hosts (through a shell there) and is not scanned
for renames; each other exception is in ``RENAME_ALLOWED`` with its reason.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ROOTS = (REPO / "nixify", REPO / "operations")

GIT_OWNER = "nixify/git.py"
# calls that start a process from a command line (subprocess, os, pyinfra, asyncio)
STARTERS = {"run", "Popen", "call", "check_call", "check_output", "getoutput",
            "getstatusoutput", "system", "popen", "run_shell_command",
            "create_subprocess_shell"}
RENAME_OWNER = "nixify/util.py"
RENAME_ALLOWED: dict[str, str] = {
    "nixify/cache/server.py": (
        "stdlib only: nixify/lab/cache.py ships its source to the serving host, where no "
        "nixify is installed; it also streams uploads of up to 4 GiB to the temp file"
    ),
    "nixify/secrets/host_activation.py": (
        "stdlib only, runs on the host from its system closure; it renames a whole "
        "generation directory and a symlink, not a file"
    ),
    "nixify/secrets/rekey.py": (
        "a batch: every temp file is written, then all are fsynced, then renamed, so the "
        "disk is waited for once per batch, not per file (bench/rekey.py)"
    ),
    "nixify/docs/build.py": "swaps the built site directory into place, not a file",
    "nixify/gitgate/hooks.py": (
        "moves a user's own (foreign) hook aside to .pre-nixify and back: a move of an "
        "existing file, not a write (its own hooks go through atomic_write, mode 0755)"
    ),
}


def _sources() -> list[Path]:
    return sorted(p for root in ROOTS for p in root.rglob("*.py"))


def _rel(path: Path) -> str:
    return path.relative_to(REPO).as_posix()


def _text(node: ast.AST) -> str | None:
    """The literal text a string expression starts with (f-strings: their first part)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr) and node.values:
        return _text(node.values[0])
    return None


def _is_git(node: ast.AST) -> bool:
    text = _text(node)
    return text is not None and text.rsplit("/", 1)[-1] == "git"


def _call_name(node: ast.Call) -> str:
    func = node.func
    return func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")


def git_starts(source: str, name: str = "<src>") -> list[str]:
    found: list[str] = []
    for node in ast.walk(ast.parse(source, name)):
        if isinstance(node, ast.List | ast.Tuple) and node.elts and _is_git(node.elts[0]):
            found.append(f"{name}:{node.lineno}: an argv starting with git")
        elif isinstance(node, ast.Call) and node.args and _call_name(node) in STARTERS:
            text = _text(node.args[0])
            if text is not None and text.startswith(("git ", "exec git ")):
                found.append(f"{name}:{node.lineno}: a git command line")
    return found


def renames(source: str, name: str = "<src>") -> list[str]:
    tree = ast.parse(source, name)
    from_os = {
        alias.asname or alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module == "os"
        for alias in node.names
        if alias.name in ("replace", "rename")
    }
    found: list[str] = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Name) and func.id in from_os:
            found.append(f"{name}:{node.lineno}: os.{func.id}")
        elif isinstance(func, ast.Attribute) and func.attr in ("replace", "rename"):
            if isinstance(func.value, ast.Name) and func.value.id == "os":
                found.append(f"{name}:{node.lineno}: os.{func.attr}")
            elif len(node.args) == 1 and not node.keywords:
                found.append(f"{name}:{node.lineno}: .{func.attr}(...) (Path)")
    return found


def test_only_nixify_git_starts_git() -> None:
    found = [
        hit
        for path in _sources()
        if _rel(path) != GIT_OWNER
        for hit in git_starts(path.read_text(), _rel(path))
    ]
    assert found == [], "git is started only by nixify/git.py (run_git, popen_git):\n" + "\n".join(
        found
    )


def test_only_atomic_write_renames_into_place() -> None:
    found = [
        hit
        for path in _sources()
        if _rel(path) != RENAME_OWNER
        and _rel(path) not in RENAME_ALLOWED
        and not _rel(path).startswith("nixify/transport/")
        for hit in renames(path.read_text(), _rel(path))
    ]
    assert found == [], "local files are replaced by nixify.util.atomic_write:\n" + "\n".join(
        found
    )


def test_every_exception_is_still_needed() -> None:
    for rel in (GIT_OWNER, RENAME_OWNER, *RENAME_ALLOWED):
        assert (REPO / rel).is_file(), f"{rel}: listed in the scan but gone"
    assert git_starts((REPO / GIT_OWNER).read_text()), "nixify/git.py no longer starts git?"
    for rel in (RENAME_OWNER, *RENAME_ALLOWED):
        assert renames((REPO / rel).read_text()), f"{rel}: renames nothing; drop its exception"


def test_the_scan_sees_each_form() -> None:
    assert len(git_starts(
        'import subprocess\n'
        'subprocess.run(["git", "-C", r, "log"])\n'
        'subprocess.Popen(("/usr/bin/git", "status"))\n'
        'run(f"git -C {r} log", shell=True)\n'
    )) == 3
    assert git_starts('x = ["gitk", "github"]\nraise E("git log failed")\n') == []
    assert len(renames(
        'import os\nfrom os import rename as mv\nfrom pathlib import Path\n'
        'os.replace(tmp, path)\nos.rename(a, b)\nmv(a, b)\n'
        'Path(tmp).replace(path)\ntmp.rename(out)\n'
    )) == 5
    assert renames('s = "a-b".replace("-", "_")\n') == []
