"""CLI: ``nixify hooks install|uninstall``, ``nixify gate ...``, ``nixify integrate``,
``nixify fixup``, ``nixify worktree``.

Subcommand modules are imported by their handlers: the commit-time leak scan
(``gate staged``, run by every pre-commit with staged changes) loads only what
it needs.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path
from typing import Any

from nixify.errors import ConfigError
from nixify.gitgate.git import config_get, git, toplevel
from nixify.gitgate.hooks import default_nixify_cmd, install_hooks, uninstall_hooks
from nixify.gitgate.policy import gate_script_path


def register(subparsers: Any) -> None:
    hooks = subparsers.add_parser("hooks", help="install the git hooks of the single gate")
    hsub = hooks.add_subparsers(dest="hooks_command", metavar="ACTION", required=True)
    inst = hsub.add_parser("install", help="write pre-commit, commit-msg and pre-push hooks")
    inst.add_argument(
        "--force", action="store_true", help="replace foreign hooks (kept as .pre-nixify)"
    )
    inst.add_argument("--repo", type=Path, default=Path("."))
    inst.add_argument(
        "--server", type=Path, default=None, metavar="DIR",
        help="install the pre-receive backstop into the bare repository DIR instead",
    )
    inst.add_argument(
        "--allowed-signers", type=Path, default=None, metavar="FILE",
        help="with --server: set DIR's gpg.ssh.allowedSignersFile (operators' signing keys)",
    )
    inst.set_defaults(func=_hooks_install)
    uninst = hsub.add_parser("uninstall", help="remove nixify's hooks (only those)")
    uninst.add_argument("--repo", type=Path, default=Path("."))
    uninst.add_argument("--server", type=Path, default=None, metavar="DIR",
                        help="remove the pre-receive backstop from the bare repository DIR")
    uninst.set_defaults(func=_hooks_uninstall)

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
    ve = gsub.add_parser(
        "verify",
        help="the backstop: re-check branch policy, messages, leaks (and operator "
        "signatures on protected branches) for every commit of a range",
    )
    ve.add_argument("range", nargs="?", default=None, metavar="OLD..NEW",
                    help="default: what the current branch adds to its upstream")
    ve.add_argument("--branch", default=None,
                    help="the branch the range lands on (default: NEW's name, or HEAD's)")
    ve.add_argument("--repo", type=Path, default=Path("."))
    ve.set_defaults(func=_gate_verify)
    st = gsub.add_parser("staged", help="commit-time leak scan of the staged blobs")
    st.add_argument("--repo", type=Path, default=Path("."))
    st.set_defaults(func=_gate_staged)
    pr = gsub.add_parser(
        "pre-receive", help="server-side backstop (git's old new ref lines on stdin)"
    )
    pr.set_defaults(func=_gate_pre_receive)

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

    fx = subparsers.add_parser(
        "fixup",
        help="fix COMMIT where it was introduced: record the staged change as fixup! and "
        "fold it in (own branch only)",
    )
    fx.add_argument("commit")
    fx.add_argument("--repo", type=Path, default=Path("."))
    fx.set_defaults(func=_fixup)

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
    if args.server is None:
        if args.allowed_signers is not None:
            raise ConfigError("--allowed-signers goes with --server DIR")
        actions = install_hooks(toplevel(args.repo), force=args.force)
    else:
        bare = args.server.resolve()
        actions = install_hooks(bare, force=args.force, server=True)
        if args.allowed_signers is not None:
            signers = args.allowed_signers.resolve()
            if not signers.is_file():
                raise ConfigError(f"{signers}: allowed-signers file not found")
            git(bare, "config", "gpg.ssh.allowedSignersFile", str(signers))
        if not config_get(bare, "gpg.ssh.allowedSignersFile") or not config_get(
            bare, "nixify.operators"
        ):
            print(
                f"{bare}: note: protected branches refuse every update until operators are "
                "known here: git config nixify.operators NAME and gpg.ssh.allowedSignersFile "
                "FILE (or --allowed-signers FILE)",
                file=sys.stderr,
            )
    for action in actions:
        print(f"{action.path}: {action.action}")
    return 0


def _hooks_uninstall(args: argparse.Namespace) -> int:
    repo = args.server.resolve() if args.server is not None else toplevel(args.repo)
    actions = uninstall_hooks(repo)
    for action in actions:
        print(f"{action.path}: {action.action}")
    if not actions:
        print(f"{repo}: no nixify hooks installed")
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
    from nixify.gitgate.validate import validate  # lazy: CLI start-up time

    return validate(args.repo, sys.stdin.read(), args.remote)


def _gate_verify(args: argparse.Namespace) -> int:
    from nixify.gitgate.verify import verify  # lazy: CLI start-up time

    return verify(args.repo, args.range, args.branch)


def _gate_staged(args: argparse.Namespace) -> int:
    from nixify.gitgate.verify import staged  # lazy: CLI start-up time

    return staged(args.repo)


def _gate_pre_receive(args: argparse.Namespace) -> int:
    from nixify.gitgate.verify import pre_receive  # lazy: CLI start-up time

    return pre_receive(Path(git(Path("."), "rev-parse", "--absolute-git-dir")),
                       sys.stdin.read())


def _fixup(args: argparse.Namespace) -> int:
    from nixify.gitgate.fixup import fixup  # lazy: CLI start-up time

    done = fixup(args.repo, args.commit)
    print(f"{done.branch}: folded the staged fix into {done.target[:10]} {done.subject!r}; "
          f"{done.old_head[:10]} -> {done.new_head[:10]}")
    return 0


def _integrate(args: argparse.Namespace) -> int:
    from nixify.gitgate.integrate import integrate  # lazy: CLI start-up time

    repo = toplevel(args.repo)
    into = args.into or config_get(repo, "nixify.operatorBranch") or "main"
    result = integrate(repo, args.branch, into, args.grant, args.grant_date, args.grant_scope)
    how = ("fast-forward, signed integration commit" if result.fast_forward
           else "signed merge commit by operator grant")
    print(f"{result.into}: {result.old[:12]} -> {result.new[:12]} ({how} of {result.branch})")
    return 0


def _worktree_new(args: argparse.Namespace) -> int:
    from nixify.gitgate.worktree import new_worktree  # lazy: CLI start-up time

    made = new_worktree(toplevel(args.repo), args.branch, args.base, args.path)
    print(f"{made.path}: {made.branch} from {made.base} at {made.base_sha[:12]}")
    owner = made.branch.split("/", 1)[0]
    print(f"next: cd {shlex.quote(str(made.path))} && export NIXIFY_ACTOR={owner}")
    return 0


def _worktree_done(args: argparse.Namespace) -> int:
    from nixify.gitgate.worktree import finish_worktree  # lazy: CLI start-up time

    note = finish_worktree(args.repo.resolve(), args.note, args.open_items)
    print(f"handoff note: {note}")
    return 0
