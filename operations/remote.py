"""Running a command on a pyinfra host and getting its real exit code back."""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pyinfra.api.command import StringCommand

_RC = "__nixify_rc="


@dataclass(frozen=True)
class Remote:
    """A finished command on a host: exit code, stdout, stderr."""

    rc: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.rc == 0

    def tail(self, lines: int = 6) -> str:
        text = (self.stderr.strip() or self.stdout.strip()).splitlines()
        return " | ".join(text[-lines:])


def quote_argv(argv: Sequence[str]) -> str:
    return " ".join(shlex.quote(a) for a in argv)


def run(host: Any, script: str, timeout: int | None = None) -> Remote:
    """Run ``script`` (a shell snippet whose user values are already quoted) on
    ``host`` through its pyinfra connection; the exit code is carried back."""
    wrapped = f"( {script}\n) ; printf '\\n{_RC}%s\\n' \"$?\""
    kwargs: dict[str, Any] = {"print_output": False}
    if timeout:
        kwargs["timeout"] = timeout
    ok, output = host.run_shell_command(StringCommand(wrapped), **kwargs)
    lines = output.stdout_lines
    rc = 255
    if lines and lines[-1].startswith(_RC):
        rc = int(lines[-1][len(_RC) :])
        lines = lines[:-1]
    elif ok:
        rc = 0
    return Remote(rc, "\n".join(lines), output.stderr)
