"""A pyinfra host as a transport: its own (paramiko) connection, our results.

``PyinfraTransport(host)`` takes the host object pyinfra hands an operation and
runs through ``host.run_shell_command``; it never touches pyinfra's global
state. pyinfra reports only success or failure, so the script prints its exit
code on a marker line that is taken off stdout. Binary stdin travels as base64
lines (pyinfra writes stdin as text) and is decoded on the host.
"""

from __future__ import annotations

import base64
import textwrap
from typing import Any

from pyinfra.api.command import StringCommand

from nixify.transport.base import JOBS_DIR, Command, TransportBase, as_script
from nixify.transport.result import Completed, HostUnreachable

_RC = "__nixify_rc="


def _is_connection_error(exc: BaseException) -> bool:
    """EOF, socket errors and timeouts, paramiko's ``SSHException`` (by name: the
    transport does not import paramiko)."""
    if isinstance(exc, EOFError | OSError):
        return True
    return any(k.__name__ == "SSHException" for k in type(exc).__mro__)


class PyinfraTransport(TransportBase):
    """A pyinfra host (``host.name``, ``host.run_shell_command``)."""

    def __init__(self, host: Any, *, jobs_dir: str = JOBS_DIR) -> None:
        self._host = host
        self.jobs_dir = jobs_dir

    @property
    def name(self) -> str:
        return str(self._host.name)

    def run(
        self,
        command: Command,
        *,
        stdin: bytes | None = None,
        timeout: float | None = None,
        check: bool = False,
    ) -> Completed:
        script = as_script(command)
        feed = "base64 -d | " if stdin is not None else ""
        wrapped = f"{feed}( {script}\n) ; printf '\\n{_RC}%s\\n' \"$?\""
        kwargs: dict[str, Any] = {"print_output": False}
        if timeout:
            kwargs["_timeout"] = timeout
        if stdin is not None:
            encoded = base64.b64encode(stdin).decode()
            kwargs["_stdin"] = textwrap.wrap(encoded, 76) or [""]
        try:
            _ok, output = self._host.run_shell_command(StringCommand(wrapped), **kwargs)
        except Exception as exc:
            if _is_connection_error(exc):
                reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                if isinstance(exc, TimeoutError) and timeout:
                    reason = f"no answer within {timeout:g}s"
                raise HostUnreachable(self.name, script, reason) from exc
            raise
        lines = list(output.stdout_lines)
        if not lines or not lines[-1].startswith(_RC):
            raise HostUnreachable(
                self.name, script,
                "the session ended before the command did: " + (output.stderr or "no output"),
            )
        rc = int(lines[-1][len(_RC):])
        lines = lines[:-1]
        if lines and lines[-1] == "":
            lines = lines[:-1]  # the marker's own leading newline
        res = Completed(self.name, script, rc, "\n".join(lines), output.stderr)
        return res.check() if check else res
