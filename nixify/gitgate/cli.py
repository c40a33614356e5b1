"""CLI: ``nixify hooks install``, ``nixify gate ...``, ``nixify integrate``, ``nixify worktree``."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path
from typing import Any

from nixify.gitgate.git import config_get, toplevel
from nixify.gitgate.hooks import default_nixify_cmd, install_hooks
from nixify.gitgate.integrate import integrate
from nixify.gitgate.policy import gate_script_path
from nixify.gitgate.validate import validate
from nixify.gitgate.worktree import finish_worktree, new_worktree


def register(subparsers: Any) -> None:
    hooks = subparsers.add_parser("hooks", help="install the git hooks of the single gate")
    hsub = hooks.add_subparsers(dest="hooks_command", metavar="ACTION", required=True)
    inst = hsub.add_parser("install", help="write pre-commit, commit-msg and pre-push hooks")
    inst.add_argument(
        "--force", action="store_true", help="replace foreign hooks (kept as .pre-nixify)"
    )
    inst.add_argument("--repo", type=Path, default=Path("."))
    inst.set_defaults(func=_hooks_install)

    gate = subparsers.add_parser("gate", help="run one step of the git gate (what the hooks call)")
    gsub = gate.add_subparsers(dest="gate_command", metavar="STEP", required=True)
    pc = gsub.add_parser("pre-commit", help="branch policy for a commit on the current branch")
    pc.set_defaults(func=_gate_script, step="pre-commit", extra=[])
    cm = gsub.add_parser("commit-msg", help="check a commit message file")
    cm.add_argument("file")
    cm.set_defaults(func=_gate_script, step="commit-msg")
    pp = gsub.add_parser(
        "pre-push", help="ref policy and validation (git's pre-push lines on stdin)"
    )
    pp.add_argument("remote", nargs="?", default="")
    pp.add_argument("url", nargs="?", default="")
    pp.set_defaults(func=_gate_script, step="pre-push")
    va = gsub.add_parser(
        "validate", help="push-time leak scan and checks (pre-push lines on stdin)"
    )
    va.add_argument("--remote", default="")
    va.add_argument("--repo", type=Path, default=Path("."))
    va.set_defaults(func=_gate_validate)

    it = subparsers.add_parser(
        "integrate", help="fast-forward an operator branch to BRANCH (operator only)"
    )
    it.add_argument("branch")
    it.add_argument("--into", default=None, help="target (default: nixify.operatorBranch or main)")
    it.add_argument("--grant", default=None, help="the operator's exact grant for a non-FF merge")
    it.add_argument(
        "--grant-date", default=None, help="when the grant was given (default: now, UTC)"
    )
    it.add_argument("--grant-scope", default=None, help="what the grant covers")
    it.add_argument("--repo", type=Path, default=Path("."))
    it.set_defaults(func=_integrate)

    wt = subparsers.add_parser("worktree", help="per-agent work trees and handoff notes")
    wsub = wt.add_subparsers(dest="worktree_command", metavar="ACTION", required=True)
    wn = wsub.add_parser("new", help="fork OWNER/TYPE/TOPIC from the operator branch's HEAD")
    wn.add_argument("branch")
    wn.add_argument("--from", dest="base", default=None, help="operator branch to fork from")
    wn.add_argument("--path", type=Path, default=None)
    wn.add_argument("--repo", type=Path, default=Path("."))
    wn.set_defaults(func=_worktree_new)
    wd = wsub.add_parser("done", help="write the handoff note and remove this work tree")
    wd.add_argument("--note", default="", help="free text for the next agent")
    wd.add_argument("--open", dest="open_items", action="append", default=[], metavar="ITEM",
                    help="an open item (repeatable)")
    wd.add_argument("--repo", type=Path, default=Path("."))
    wd.set_defaults(func=_worktree_done)


def _hooks_install(args: argparse.Namespace) -> int:
    for action in install_hooks(toplevel(args.repo), force=args.force):
        print(f"{action.path}: {action.action}")
    return 0


def _gate_script(args: argparse.Namespace) -> int:
    extra = []
    if args.step == "commit-msg":
        extra = [args.file]
    elif args.step == "pre-push":
        extra = [args.remote, args.url]
    env = dict(os.environ)
    env.setdefault("NIXIFY_CMD", default_nixify_cmd())
    sys.stdout.flush()
    os.execvpe("sh", ["sh", str(gate_script_path()), args.step, *extra], env)


def _gate_validate(args: argparse.Namespace) -> int:
    return validate(args.repo, sys.stdin.read(), args.remote)


def _integrate(args: argparse.Namespace) -> int:
    repo = toplevel(args.repo)
    into = args.into or config_get(repo, "nixify.operatorBranch") or "main"
    result = integrate(repo, args.branch, into, args.grant, args.grant_date, args.grant_scope)
    how = "fast-forward" if result.fast_forward else "merge commit by operator grant"
    print(f"{result.into}: {result.old[:12]} -> {result.new[:12]} ({how} of {result.branch})")
    return 0


def _worktree_new(args: argparse.Namespace) -> int:
    made = new_worktree(toplevel(args.repo), args.branch, args.base, args.path)
    print(f"{made.path}: {made.branch} from {made.base} at {made.base_sha[:12]}")
    owner = made.branch.split("/", 1)[0]
    print(f"next: cd {shlex.quote(str(made.path))} && export NIXIFY_ACTOR={owner}")
    return 0


def _worktree_done(args: argparse.Namespace) -> int:
    note = finish_worktree(args.repo.resolve(), args.note, args.open_items)
    print(f"handoff note: {note}")
    return 0
