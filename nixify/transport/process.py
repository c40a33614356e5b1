"""Starting a local process with a deadline that kills everything it started."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Mapping, Sequence


class Deadline(Exception):
    """The process did not finish in time (it and its process group were killed)."""

    def __init__(self, seconds: float, stdout: bytes, stderr: bytes) -> None:
        super().__init__(f"no answer within {seconds:g}s")
        self.seconds = seconds
        self.stdout = stdout
        self.stderr = stderr


def spawn(
    argv: Sequence[str],
    *,
    stdin: bytes | None,
    timeout: float | None,
    env: Mapping[str, str] | None = None,
) -> tuple[int, bytes, bytes]:
    """Run ``argv`` (in its own session), feed ``stdin`` (none: ``/dev/null``), return
    (exit code, stdout, stderr). Past ``timeout`` the whole process group is killed
    and ``Deadline`` raised, so no grandchild keeps a pipe (and this call) open."""
    proc = subprocess.Popen(
        list(argv),
        stdin=subprocess.DEVNULL if stdin is None else subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=None if env is None else dict(env),
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(stdin, timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise Deadline(timeout or 0.0, out, err) from None
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise
    return proc.returncode, out, err
