"""Argv runners for the library code that reads a store (closure diff, secrets audit).

A ``CommandRunner`` runs an argv and returns a ``CompletedProcess`` with bytes, as
``nixify.diff`` expects. It is a thin adapter over ``nixify.transport``, which
is the only code that starts a process on a host: ``LocalRunner`` is a
``LocalTransport`` with nixify's Nix settings, ``SshRunner`` an ``SshTransport``.
A non-zero exit with ``check`` raises ``CommandFailed`` (a ``RemoteError``).
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping, Sequence
from typing import Protocol

from nixify.nix.env import nix_environ
from nixify.transport import LocalTransport, SshTransport, Transport


class CommandRunner(Protocol):
    """Runs an argv somewhere and returns its completed process."""

    @property
    def name(self) -> str: ...

    def run(
        self,
        argv: Sequence[str],
        *,
        stdin: bytes | None = None,
        check: bool = True,
        timeout: float | None = None,
    ) -> subprocess.CompletedProcess[bytes]: ...


def local_transport(env: Mapping[str, str] | None = None) -> LocalTransport:
    """This machine, with nixify's ``NIX_CONFIG`` added to ``env`` (default: ours)."""
    return LocalTransport(nix_environ(env))


class TransportRunner:
    """A ``CommandRunner`` over any transport."""

    def __init__(self, transport: Transport) -> None:
        self.transport = transport

    @property
    def name(self) -> str:
        return self.transport.name

    def run(
        self,
        argv: Sequence[str],
        *,
        stdin: bytes | None = None,
        check: bool = True,
        timeout: float | None = None,
    ) -> subprocess.CompletedProcess[bytes]:
        if isinstance(argv, str):
            raise TypeError("a CommandRunner runs an argv, not a shell string")
        res = self.transport.run(argv, stdin=stdin, timeout=timeout, check=check)
        return subprocess.CompletedProcess(
            list(argv), res.rc, res.stdout.encode(), res.stderr.encode()
        )


class LocalRunner(TransportRunner):
    """Runs on the operator's machine, with nixify's Nix configuration."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        super().__init__(local_transport(env))


class SshRunner(TransportRunner):
    """Runs on a host over OpenSSH; ``ssh_args`` select it (e.g. ``-F cfg host``)."""

    def __init__(self, name: str, ssh_args: Sequence[str]) -> None:
        super().__init__(SshTransport(name, ssh_args))
