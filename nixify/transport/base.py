"""The one interface to a machine, and what every transport builds on ``run``.

A ``Transport`` runs a command on one host and returns a ``Completed``. A command
is a shell script (``str``: every user value in it already quoted) or an argv
(a sequence, quoted here, once). Everything else a transport offers is built
from ``run`` in ``TransportBase``, so it behaves the same whatever carries it:

- ``read_file`` / ``write_file``: one round trip each; a write goes to a temporary
  file in the same directory, is fsync'ed, then renamed over the target, so a
  reader sees the old file or the new one, never half of one.
- detached jobs: a script started with ``setsid`` (stdin from ``/dev/null``,
  output to a log on the host) that survives the SSH connection dropping and
  the operator being killed. Its directory ``<jobs_dir>/<job>/`` appears
  complete in one rename (``script``, then ``pid``, ``log``); its exit code is
  written to ``rc`` with write + fsync + rename once the script has ended. The
  outcome is read back by a new command; starting a job that exists does not
  run it again.
"""

from __future__ import annotations

import base64
import hashlib
import posixpath
import re
import shlex
import time
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from nixify.transport.result import (
    CommandFailed,
    Completed,
    DetachedOutcome,
    DetachedTimeout,
    HostUnreachable,
)

JOBS_DIR = "/var/lib/nixify/jobs"
LOG_TAIL_BYTES = 4000
_JOB_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.@+-]{0,127}")
_ABSENT = "nixify-absent"
_STATE = "nixify-job="

Command = str | Sequence[str]


def quote_argv(argv: Sequence[str]) -> str:
    """``argv`` as one shell command line, every word quoted."""
    return " ".join(shlex.quote(a) for a in argv)


def as_script(command: Command) -> str:
    """The shell text of ``command``: a script as it is, an argv quoted once."""
    if isinstance(command, str):
        return command
    argv = list(command)
    if not argv:
        raise ValueError("an empty argv is no command")
    return quote_argv(argv)


@runtime_checkable
class Transport(Protocol):
    """The only way nixify reaches a machine: this one, or a host."""

    @property
    def name(self) -> str: ...

    def run(
        self,
        command: Command,
        *,
        stdin: bytes | None = None,
        timeout: float | None = None,
        check: bool = False,
    ) -> Completed: ...

    def read_file(self, path: str) -> bytes | None: ...

    def write_file(self, path: str, data: bytes, mode: int = 0o600) -> None: ...

    def start_detached(self, job: str, script: str) -> None: ...

    def detached_outcome(self, job: str) -> DetachedOutcome | None: ...

    def wait_detached(
        self, job: str, timeout: float, poll: float = 0.5
    ) -> DetachedOutcome: ...


def _job_name(job: str) -> str:
    if not _JOB_NAME.fullmatch(job):
        raise ValueError(f"{job!r} is not a job name (letters, digits, _ . @ + -)")
    return job


# The job's runner: $1 = its staged directory, $2 = the job directory. It claims
# the job by renaming the staged directory into place (fails when the job exists:
# a job never runs twice), runs the script, and records its exit code atomically.
_RUNNER = r"""
tmp=$1 d=$2
mv -T "$tmp" "$d" 2>/dev/null || { mv "$tmp" "$tmp.unclaimed"; exit 0; }
echo $$ > "$d/pid.tmp" && mv -f "$d/pid.tmp" "$d/pid"
sh "$d/script" </dev/null >>"$d/log" 2>&1
rc=$?
printf '%s\n' "$rc" > "$d/rc.tmp"
sync -- "$d/rc.tmp" 2>/dev/null || sync
mv -f "$d/rc.tmp" "$d/rc"
sync -- "$d" 2>/dev/null || true
"""


def start_script(jobs_dir: str, job: str, digest: str = "") -> str:
    """Stage the job (its script arrives on stdin), start its runner detached,
    wait until the runner claimed it; print ``nixify-job=started|exists``.
    With ``digest`` (sha256 of the script), a script that arrived incomplete (the
    operator died while sending it) is never started."""
    base, d = shlex.quote(jobs_dir), shlex.quote(f"{jobs_dir}/{job}")
    check = (
        f'[ "$(sha256sum < "$tmp/script" | cut -d" " -f1)" = {shlex.quote(digest)} ] || '
        '{ rm -rf "$tmp"; echo "the job\'s script arrived incomplete" >&2; exit 94; }'
        if digest else ":"
    )
    stage = shlex.quote(f"{jobs_dir}/.new.{job}.XXXXXX")
    return f"""set -u
d={d}
mkdir -p {base} || exit 97
tmp=$(mktemp -d {stage}) || exit 97
cat > "$tmp/script" || {{ rm -rf "$tmp"; exit 97; }}
{check}
token="$$.$(date +%s%N)"
echo "$token" > "$tmp/token"
same() {{
  if cmp -s "$1/script" "$d/script"; then rm -rf "$1"; echo {_STATE}exists; exit 0; fi
  rm -rf "$1"
  echo "job {job} exists on this host with a different script ($d)" >&2; exit 96
}}
[ ! -e "$d" ] || same "$tmp"
setsid -f sh -c {shlex.quote(_RUNNER)} nixify-job "$tmp" "$d" </dev/null >/dev/null 2>&1 \\
  || {{ rm -rf "$tmp"; echo "setsid failed" >&2; exit 95; }}
i=0
while [ -e "$tmp" ] && [ "$i" -lt 2000 ]; do sleep 0.005; i=$((i+1)); done
if [ "$(cat "$d/token" 2>/dev/null)" = "$token" ]; then echo {_STATE}started; exit 0; fi
[ ! -e "$tmp.unclaimed" ] || same "$tmp.unclaimed"
echo "the job's runner did not start within 10s" >&2
exit 95
"""


def outcome_script(jobs_dir: str, job: str) -> str:
    """Print ``nixify-job=absent|running|starting|lost|rc=N``, then the log's end."""
    d = shlex.quote(f"{jobs_dir}/{job}")
    return f"""d={d}
[ -d "$d" ] || {{ echo {_STATE}absent; exit 0; }}
alive() {{
  p=$(cat "$d/pid" 2>/dev/null) || return 1
  [ -n "$p" ] && tr '\\0' '\\n' < "/proc/$p/cmdline" 2>/dev/null | grep -qxF -- "$d"
}}
if [ -f "$d/rc" ]; then s="rc=$(cat "$d/rc")"
elif alive; then s=running
elif [ -f "$d/rc" ]; then s="rc=$(cat "$d/rc")"
elif [ ! -f "$d/pid" ]; then s=starting
else s=lost; fi
echo "{_STATE}$s"
tail -c {LOG_TAIL_BYTES} "$d/log" 2>/dev/null
true
"""


def write_script(path: str, mode: int) -> str:
    """Atomically replace ``path`` with stdin: temporary file in the same directory,
    fsync, rename; a failure leaves the old file as it was and no temporary file."""
    directory = posixpath.dirname(path) or "."
    stage = f"{directory}/.{posixpath.basename(path)}.nixify.XXXXXX"
    p, d = shlex.quote(path), shlex.quote(directory)
    return f"""set -e
t=$(mktemp {shlex.quote(stage)})
trap 'rm -f "$t"' EXIT
cat > "$t"
chmod {mode:04o} "$t"
sync -- "$t" 2>/dev/null || sync
mv -f -- "$t" {p}
trap - EXIT
sync -- {d} 2>/dev/null || true
"""


def read_script(path: str) -> str:
    p = shlex.quote(path)
    return f"[ -e {p} ] || {{ echo {_ABSENT}; exit 0; }}; base64 < {p}"


class TransportBase:
    """Files and detached jobs, built on a subclass's ``run``."""

    jobs_dir: str = JOBS_DIR

    @property
    def name(self) -> str:
        raise NotImplementedError

    def run(
        self,
        command: Command,
        *,
        stdin: bytes | None = None,
        timeout: float | None = None,
        check: bool = False,
    ) -> Completed:
        raise NotImplementedError

    def read_file(self, path: str, timeout: float | None = 300) -> bytes | None:
        """The file's bytes; None when it does not exist."""
        res = self.run(read_script(path), timeout=timeout, check=True)
        if res.stdout.strip() == _ABSENT:
            return None
        return base64.b64decode(res.stdout)

    def write_file(
        self, path: str, data: bytes, mode: int = 0o600, timeout: float | None = 300
    ) -> None:
        """Replace ``path`` with ``data`` atomically (one round trip)."""
        if not 0 <= mode <= 0o7777:
            raise ValueError(f"{mode!r} is not a file mode")
        self.run(write_script(path, mode), stdin=data, timeout=timeout, check=True)

    def start_detached(self, job: str, script: str, timeout: float | None = 60) -> None:
        """Run ``script`` (shell) detached on the host as ``job``. Starting a job that
        exists with the same script does nothing (it ran or runs already); with a
        different script it is an error."""
        res = self.run(
            start_script(self.jobs_dir, _job_name(job),
                         hashlib.sha256(script.encode()).hexdigest()),
            stdin=script.encode(),
            timeout=timeout,
            check=True,
        )
        if _STATE + "started" not in res.stdout and _STATE + "exists" not in res.stdout:
            raise CommandFailed(self.name, f"start detached job {job}", res.rc, res.stderr,
                                res.stdout)

    def detached_outcome(self, job: str, timeout: float | None = 60) -> DetachedOutcome | None:
        """How ``job`` ended; None while it runs. Read by a new command, so it works
        from another connection or another operator process than the one that
        started it."""
        res = self.run(outcome_script(self.jobs_dir, _job_name(job)), timeout=timeout,
                       check=True)
        first, _, log = res.stdout.partition("\n")
        state = first.strip().removeprefix(_STATE)
        if state in ("running", "starting"):
            return None
        if state == "absent":
            raise CommandFailed(
                self.name, f"detached job {job}", 2, f"no job {job} in {self.jobs_dir}"
            )
        if state == "lost":
            return DetachedOutcome(self.name, job, None, log)
        if state.startswith("rc="):
            try:
                return DetachedOutcome(self.name, job, int(state[3:]), log)
            except ValueError:
                pass
        raise CommandFailed(self.name, f"detached job {job}", res.rc,
                            f"unreadable job state {first!r}", res.stdout)

    def wait_detached(self, job: str, timeout: float, poll: float = 0.5) -> DetachedOutcome:
        """Poll ``job`` (each time over a new command) until it ends or ``timeout``
        seconds pass. A host that does not answer for a while is polled again: the
        job runs on without the operator's connection."""
        deadline = time.monotonic() + timeout
        last = ""
        while True:
            left = deadline - time.monotonic()
            try:
                outcome = self.detached_outcome(job, timeout=max(5.0, min(60.0, left)))
                last = "running"
            except HostUnreachable as exc:
                outcome, last = None, exc.reason
                if time.monotonic() >= deadline:
                    raise
            if outcome is not None:
                return outcome
            if time.monotonic() + poll > deadline:
                raise DetachedTimeout(self.name, job, timeout, last)
            time.sleep(poll)
