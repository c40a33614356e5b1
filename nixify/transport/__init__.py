"""The transport: the only code that starts ``ssh`` or runs a command on a host.

One interface (``Transport``), three carriers: ``LocalTransport`` (this
machine), ``SshTransport`` (OpenSSH, one multiplexing policy) and
``PyinfraTransport`` (a pyinfra host's own connection). Every command returns a
``Completed``; a non-zero exit is ``CommandFailed`` when checked, a host that
did not answer is always ``HostUnreachable``. Files are written atomically and
detached jobs outlive the connection that started them (``nixify.transport.base``).

Core: imports nothing of nixify but ``nixify.errors``, and of pyinfra only its
command types (for ``PyinfraTransport``, imported on first use).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nixify.transport.base import JOBS_DIR, Command, Transport, TransportBase, as_script, quote_argv
from nixify.transport.local import LocalTransport
from nixify.transport.result import (
    CommandFailed,
    Completed,
    DetachedOutcome,
    DetachedTimeout,
    HostUnreachable,
)
from nixify.transport.ssh import (
    SshTransport,
    close_all,
    copy_closure,
    nix_sshopts,
    parse_ssh_url,
)

if TYPE_CHECKING:
    from nixify.transport.pyinfra_host import PyinfraTransport

__all__ = [
    "JOBS_DIR",
    "Command",
    "CommandFailed",
    "Completed",
    "DetachedOutcome",
    "DetachedTimeout",
    "HostUnreachable",
    "LocalTransport",
    "PyinfraTransport",
    "SshTransport",
    "Transport",
    "TransportBase",
    "as_script",
    "close_all",
    "copy_closure",
    "nix_sshopts",
    "parse_ssh_url",
    "quote_argv",
]


def __getattr__(name: str) -> Any:
    if name == "PyinfraTransport":  # pyinfra is imported only by who uses it
        from nixify.transport.pyinfra_host import PyinfraTransport

        return PyinfraTransport
    raise AttributeError(name)
