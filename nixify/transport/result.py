"""What a command on a host gives back, and the two ways it can fail.

``Completed`` is every command's result, whatever carried it. ``CommandFailed``
says the host ran the command and it exited non-zero; ``HostUnreachable`` (a
``CommandFailed``) says the host did not answer: the connection was refused,
dropped or timed out, so nothing is known about the command's own outcome.
"""

from __future__ import annotations

from dataclasses import dataclass

from nixify.errors import RemoteError

COMMAND_SHOWN = 120  # characters of a command an error message shows


def shorten(command: str, limit: int = COMMAND_SHOWN) -> str:
    """``command`` on one line, at most ``limit`` characters."""
    one = " ".join(command.split())
    return one if len(one) <= limit else one[: limit - 3] + "..."


def tail_of(text: str, lines: int = 6) -> str:
    """The last non-empty ``lines`` of ``text``, joined with `` | ``."""
    kept = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return " | ".join(kept[-lines:])


@dataclass(frozen=True)
class Completed:
    """A command that ran to its end on ``host``: its exit code and its output."""

    host: str
    command: str
    rc: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.rc == 0

    def tail(self, lines: int = 6) -> str:
        """The last ``lines`` lines of stderr (of stdout when stderr is empty)."""
        return tail_of(self.stderr if self.stderr.strip() else self.stdout, lines)

    def check(self) -> Completed:
        """``self`` when it exited 0; else ``CommandFailed``."""
        if not self.ok:
            raise CommandFailed(self.host, self.command, self.rc, self.stderr, self.stdout)
        return self


class CommandFailed(RemoteError):
    """A command on a host exited non-zero: names the host, the command, the exit
    code and the end of what it said."""

    def __init__(
        self, host: str, command: str, rc: int, stderr: str = "", stdout: str = ""
    ) -> None:
        super().__init__(host, command, rc, stderr)
        self.rc = rc
        self.stdout = stdout
        said = tail_of(stderr if stderr.strip() else stdout, 3) or "no output"
        self.args = (f"{host}: `{shorten(command)}` exited {rc}: {said}",)

    def __str__(self) -> str:
        return str(self.args[0])


class HostUnreachable(CommandFailed):
    """The host did not answer (connection refused, dropped or timed out); the
    command's own outcome is unknown. ``reason`` is what the connection said."""

    def __init__(self, host: str, command: str, reason: str, rc: int = 255) -> None:
        super().__init__(host, command, rc, reason)
        self.reason = reason
        self.args = (f"{host}: did not answer (`{shorten(command, 60)}`): {reason}",)


@dataclass(frozen=True)
class DetachedOutcome:
    """How a detached job on ``host`` ended. ``rc`` is the job script's own exit
    code; None when the job stopped without recording one (its runner was killed,
    or the host went down while it ran). ``log`` is the end of its output."""

    host: str
    job: str
    rc: int | None
    log: str

    @property
    def ok(self) -> bool:
        return self.rc == 0

    def tail(self, lines: int = 6) -> str:
        return tail_of(self.log, lines)


class DetachedTimeout(RemoteError):
    """A detached job was still running when the wait for it ended."""

    def __init__(self, host: str, job: str, waited: float, last: str = "") -> None:
        super().__init__(host, f"detached job {job}", -1, last)
        self.job = job
        self.args = (
            f"{host}: detached job {job} still running after {waited:.0f}s"
            + (f" ({last})" if last else ""),
        )

    def __str__(self) -> str:
        return str(self.args[0])
