"""Bench: the commit-time gate's cost per commit against the pre-commit framework.

Three temporary repositories, the same commits (``git commit --allow-empty``
on ``claude/feat/bench``):

- ``none``: no hooks (git's own cost, the floor);
- ``nixify``: ``nixify hooks install`` (pre-commit branch guard + commit-msg gate,
  the POSIX sh script);
- ``pre-commit``: the pre-commit framework with an equivalent trivial hook at
  both stages (``language: system``, ``entry: true``), the named baseline.

Prints the mean time per commit, each gate's overhead over ``none``, and the
ratio of the framework's overhead to the nixify gate's. The spec's budget for
the guard is 100 ms per commit. Skips, saying so, if pre-commit is not
installed (``.venv/bin/pip install pre-commit``; not a project dependency).

    .venv/bin/python bench/hooks.py [--commits 40]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from nixify.gitgate.hooks import install_hooks

PRE_COMMIT_CONFIG = """\
repos:
  - repo: local
    hooks:
      - id: branch-guard
        name: branch guard
        language: system
        entry: "true"
        always_run: true
        pass_filenames: false
        stages: [pre-commit]
      - id: commit-msg
        name: commit message
        language: system
        entry: "true"
        always_run: true
        pass_filenames: false
        stages: [commit-msg]
"""


def git(repo: Path, *args: str, env: dict[str, str]) -> None:
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, env=env)


def make_repo(root: Path, name: str, env: dict[str, str]) -> Path:
    repo = root / name
    repo.mkdir()
    git(repo, "init", "-q", "-b", "claude/feat/bench", env=env)
    git(repo, "config", "user.name", "Bench", env=env)
    git(repo, "config", "user.email", "bench@example.invalid", env=env)
    return repo


def per_commit(repo: Path, n: int, env: dict[str, str]) -> float:
    git(repo, "commit", "-q", "--allow-empty", "-m", "chore: warm up", env=env)
    t0 = time.perf_counter()
    for i in range(n):
        git(repo, "commit", "-q", "--allow-empty", "-m", f"feat(bench): commit {i}", env=env)
    return (time.perf_counter() - t0) / n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--commits", type=int, default=40)
    args = ap.parse_args()
    pre_commit = shutil.which("pre-commit", path=str(Path(sys.executable).parent)) or shutil.which(
        "pre-commit"
    )
    if pre_commit is None:
        print("bench/hooks.py: SKIPPED: the pre-commit framework is not installed "
              "(.venv/bin/pip install pre-commit)", file=sys.stderr)
        return 0
    with tempfile.TemporaryDirectory(prefix="nixify-hookbench-") as tmp:
        root = Path(tmp)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "NIXIFY_"))}
        env["PRE_COMMIT_HOME"] = str(root / "pre-commit-home")
        none = make_repo(root, "none", env)
        ours = make_repo(root, "nixify", env)
        install_hooks(ours)
        theirs = make_repo(root, "pre-commit", env)
        (theirs / ".pre-commit-config.yaml").write_text(PRE_COMMIT_CONFIG)
        git(theirs, "add", ".pre-commit-config.yaml", env=env)
        subprocess.run([pre_commit, "install", "-t", "pre-commit", "-t", "commit-msg"],
                       cwd=theirs, check=True, capture_output=True, env=env)
        # A refusal proves the nixify hooks are live in this setup.
        bad = subprocess.run(["git", "-C", str(ours), "commit", "--allow-empty", "-m", "wip"],
                             capture_output=True, env=env)
        assert bad.returncode != 0, "nixify gate is not active"
        t_none = per_commit(none, args.commits, env)
        t_ours = per_commit(ours, args.commits, env)
        t_theirs = per_commit(theirs, args.commits, env)
    ms = 1000.0
    o_ours, o_theirs = t_ours - t_none, t_theirs - t_none
    print(f"commits per setup          : {args.commits}")
    print(f"no hooks (git floor)       : {t_none * ms:7.1f} ms/commit")
    print(f"nixify gate (sh)           : {t_ours * ms:7.1f} ms/commit  overhead "
          f"{o_ours * ms:6.1f} ms  (budget 100 ms)")
    print(f"baseline pre-commit (py)   : {t_theirs * ms:7.1f} ms/commit  overhead "
          f"{o_theirs * ms:6.1f} ms")
    print(f"ratio pre-commit / nixify  : {t_theirs / t_ours:5.2f}x per commit, "
          f"{o_theirs / max(o_ours, 1e-6):5.1f}x in hook overhead")
    return 0 if t_ours * ms < 100 else 1


if __name__ == "__main__":
    sys.exit(main())
