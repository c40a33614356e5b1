"""Running a command on a pyinfra host and getting its real exit code back.

A shim over ``nixify.transport.PyinfraTransport`` for the operations that still
call ``run(host, script)``; new code uses the transport directly. A host whose
connection fails raises ``nixify.transport.HostUnreachable``.
"""

from __future__ import annotations

from typing import Any

from nixify.transport import Completed, quote_argv
from nixify.transport.pyinfra_host import PyinfraTransport

Remote = Completed  # rc, stdout, stderr, ok, tail(): what the operations read

__all__ = ["Remote", "quote_argv", "run"]


def run(host: Any, script: str, timeout: int | None = None) -> Completed:
    """Run ``script`` (a shell snippet whose user values are already quoted) on
    ``host`` through its pyinfra connection; the exit code is carried back."""
    return PyinfraTransport(host).run(script, timeout=timeout)
