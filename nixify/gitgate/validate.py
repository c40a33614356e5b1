"""Push-time validation: the leak scan of what is pushed, then the project's checks.

Called by the pre-push gate as ``nixify gate validate --remote R`` with git's
pre-push lines on stdin (``<local ref> <local sha> <remote ref> <remote sha>``).

1. Leak scan of every blob the push publishes (objects reachable from the
   pushed commits and not from the remote's known refs or the old remote
   tips), with the repository's ``.leak-allowlist``. Pure Python, no Nix: it
   always runs locally. Findings refuse the push.
2. The project's checks, ``git config --get-all nixify.check`` (shell
   commands), run in a fresh export of each pushed commit (``git archive``;
   ``$NIXIFY_WORKTREE`` names the work tree for tools that live there).
   On a constrained host they run on the builder instead: the host is
   constrained when ``git config nixify.constrained`` says so, or, unset, when
   Nix reports ``max-jobs = 0``. The builder is ``git config nixify.builder``
   (``[ssh://][user@]host[:port]``; extra ssh options in
   ``nixify.builderSshArgs``). The export is streamed over SSH and the checks
   run in a temporary directory there.

   A builder that cannot be reached (ssh exits 255 on a probe) makes the gate
   print a ``SKIPPED`` line with ssh's reason and exit 0: the only case where a
   check does not run and the push still goes, and never silently. A
   constrained host without a configured builder refuses the push.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from nixify.git import run_git_bytes
from nixify.gitgate.git import GitError, config_all, config_get, git_ok, toplevel
from nixify.gitgate.verify import protected_names, protected_problems
from nixify.leak.allowlist import ALLOWLIST_NAME, load_allowlist
from nixify.leak.history import scan_history
from nixify.nix.env import nix_environ
from nixify.transport import Completed, HostUnreachable, SshTransport, parse_ssh_url
from nixify.util import parse_flag

ZERO = "0" * 40
PROBE_TIMEOUT = 5


@dataclass(frozen=True)
class RefUpdate:
    local_ref: str
    local_sha: str
    remote_ref: str
    remote_sha: str


def parse_updates(text: str) -> list[RefUpdate]:
    out = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 4:
            out.append(RefUpdate(*parts))
    return out


def say(msg: str) -> None:
    print(f"nixify gate: {msg}", file=sys.stderr, flush=True)


def is_constrained(repo: Path) -> tuple[bool, str]:
    """Whether this host must not build; and why we think so."""
    setting = config_get(repo, "nixify.constrained")
    if setting is not None:
        on = parse_flag(setting, "git config nixify.constrained")
        return on, f"git config nixify.constrained = {setting}"
    try:
        proc = subprocess.run(
            ["nix", "show-config"], capture_output=True, text=True, env=nix_environ(), timeout=30
        )
    except (FileNotFoundError, subprocess.TimeoutExpired):
        return False, "nix not available"
    for line in proc.stdout.splitlines():
        key, _, value = line.partition(" = ")
        if key.strip() == "max-jobs":
            return value.strip() == "0", f"nix max-jobs = {value.strip()}"
    return False, "nix reports no max-jobs"


@dataclass(frozen=True)
class Builder:
    spec: str
    destination: str
    ssh_args: tuple[str, ...]

    @classmethod
    def parse(cls, spec: str, extra: str = "") -> Builder:
        dest, port = parse_ssh_url(spec)
        args: list[str] = ["-o", "BatchMode=yes", "-o", f"ConnectTimeout={PROBE_TIMEOUT}"]
        args += port
        args += shlex.split(extra)
        return cls(spec, dest, tuple(args))

    def transport(self) -> SshTransport:
        return SshTransport(self.spec, [*self.ssh_args, self.destination])


def probe(builder: Builder) -> str | None:
    """None when the builder answers; else ssh's reason."""
    try:
        res = builder.transport().run("true", timeout=PROBE_TIMEOUT + 10)
    except HostUnreachable as exc:
        return exc.reason
    if res.rc == 255:
        return res.tail(1) or "ssh exited 255"
    return None


def leak_gate(repo: Path, updates: list[RefUpdate], remote: str) -> bool:
    tips = sorted({u.local_sha for u in updates if u.local_sha != ZERO})
    if not tips:
        return True
    revs: list[str] = [*tips, "--not"]
    if remote and git_ok(repo, "config", "--get", f"remote.{remote}.url"):
        revs.append(f"--remotes={remote}")
    revs += [u.remote_sha for u in updates if u.remote_sha != ZERO and git_ok(
        repo, "cat-file", "-e", f"{u.remote_sha}^{{commit}}")]
    findings = scan_history(repo, tuple(revs))
    allow_file = repo / ALLOWLIST_NAME
    allowlist = load_allowlist(allow_file if allow_file.is_file() else None, repo)
    findings = [f for f in findings if not allowlist.allows(f)]
    for f in findings:
        print(f.render(), file=sys.stderr)
    if findings:
        say(f"refused: the push would publish {len(findings)} leak finding(s) (above).")
        return False
    say(f"leak scan of the pushed objects: clean ({len(tips)} tip(s))")
    return True


def protected_gate(repo: Path, updates: list[RefUpdate], remote: str) -> bool:
    """A push to a protected branch must already meet the server's rules: forward
    only, operator-signed tip and merges, no fixup commits (see ``verify``)."""
    heads = {
        u.remote_ref.removeprefix("refs/heads/"): u
        for u in updates
        if u.remote_ref.startswith("refs/heads/") and u.local_sha != ZERO
    }
    ok = True
    for name in sorted(protected_names(repo, heads)):
        u = heads[name]
        revs = [u.local_sha, "--not"]
        if remote and git_ok(repo, "config", "--get", f"remote.{remote}.url"):
            revs.append(f"--remotes={remote}")
        for p in protected_problems(repo, name, u.remote_sha, u.local_sha, revs):
            say(f"refused: {name}: {p.render()}")
            ok = False
    return ok


def _archive(repo: Path, sha: str) -> subprocess.CompletedProcess[bytes]:
    """``git archive`` of ``sha`` (a tar in stdout); GitError when git cannot make it."""
    proc = run_git_bytes(repo, ("archive", "--format=tar", sha))
    if proc.returncode != 0:
        detail = proc.stderr.decode(errors="replace").strip()
        raise GitError(f"{repo}: git archive {sha[:10]}: {detail}")
    return proc


def _run_local(repo: Path, sha: str, checks: list[str]) -> bool:
    with tempfile.TemporaryDirectory(prefix="nixify-gate-") as tmp:
        archive = _archive(repo, sha)
        tar_path = Path(tmp) / "tree.tar"
        tar_path.write_bytes(archive.stdout)
        tree = Path(tmp) / "tree"
        tree.mkdir()
        with tarfile.open(tar_path) as tf:
            tf.extractall(tree, filter="data")
        env = dict(os.environ, NIXIFY_WORKTREE=str(repo))
        for check in checks:
            say(f"check (local, {sha[:10]}): {check}")
            rc = subprocess.run(["sh", "-c", check], cwd=tree, env=env).returncode
            if rc != 0:
                say(f"refused: check failed (exit {rc}): {check}")
                return False
    return True


def _run_remote(repo: Path, builder: Builder, sha: str, checks: list[str]) -> bool:
    script = "\n".join(
        [
            "set -u",
            'd=$(mktemp -d) || exit 97',
            'trap \'rm -rf "$d"\' EXIT',
            'tar -x -C "$d" || exit 98',
            'cd "$d" || exit 98',
            *[
                f"echo {shlex.quote('nixify gate: check (builder): ' + c)} >&2; "
                f"sh -c {shlex.quote(c)} || exit $?"
                for c in checks
            ],
        ]
    )
    archive = _archive(repo, sha)
    try:
        res = builder.transport().run(script, stdin=archive.stdout)
    except HostUnreachable as exc:
        res = Completed(builder.spec, script, exc.rc, "", f"{exc.reason}\n")
    sys.stdout.write(res.stdout)
    sys.stderr.write(res.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    rc = res.rc
    if rc != 0:
        say(f"refused: checks failed on builder {builder.spec} (exit {rc})")
        return False
    return True


def validate(repo: Path, updates_text: str, remote: str = "") -> int:
    """The push-time gate. 0: push may go; 1: refused."""
    repo = toplevel(repo)
    updates = parse_updates(updates_text)
    if not leak_gate(repo, updates, remote):
        return 1
    if not protected_gate(repo, updates, remote):
        return 1
    checks = config_all(repo, "nixify.check")
    tips = sorted({u.local_sha for u in updates if u.local_sha != ZERO})
    if not checks:
        say("no project checks configured (git config --add nixify.check CMD); leak scan only")
        return 0
    if not tips:
        return 0
    constrained, why = is_constrained(repo)
    if not constrained:
        return 0 if all(_run_local(repo, sha, checks) for sha in tips) else 1
    spec = config_get(repo, "nixify.builder")
    if not spec:
        say(
            f"refused: constrained host ({why}) must not run the checks locally and no "
            "builder is configured (git config nixify.builder [user@]host[:port])"
        )
        return 1
    builder = Builder.parse(spec, config_get(repo, "nixify.builderSshArgs") or "")
    reason = probe(builder)
    if reason is not None:
        msg = (
            f"SKIPPED push-time checks ({len(checks)}): constrained host ({why}) and "
            f"builder {spec} unreachable: {reason}"
        )
        say(msg)
        print(f"nixify gate: {msg}", flush=True)
        return 0
    say(f"constrained host ({why}): running checks on builder {spec}")
    return 0 if all(_run_remote(repo, builder, sha, checks) for sha in tips) else 1
