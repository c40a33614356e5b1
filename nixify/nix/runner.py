"""Where a command runs: on this machine, or on a host over OpenSSH.

Library code that needs a host's store (the closure diff, the secrets audit)
takes a ``CommandRunner`` so that it can be unit-tested locally and used
against a host unchanged. Arguments are passed as a list and quoted once,
here, for the remote shell.
"""

from __future__ import annotations

import shlex
import subprocess
from collections.abc import Mapping, Sequence
from typing import Protocol

from nixify.errors import RemoteError
from nixify.nix.env import nix_environ


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


def _checked(
    name: str, argv: Sequence[str], proc: subprocess.CompletedProcess[bytes], check: bool
) -> subprocess.CompletedProcess[bytes]:
    if check and proc.returncode != 0:
        stderr = proc.stderr.decode(errors="replace")
        raise RemoteError(name, shlex.join(argv), proc.returncode, stderr)
    return proc


class LocalRunner:
    """Runs on the operator's machine, with nixify's Nix configuration."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        self._env = nix_environ(env)

    @property
    def name(self) -> str:
        return "local"

    def run(
        self,
        argv: Sequence[str],
        *,
        stdin: bytes | None = None,
        check: bool = True,
        timeout: float | None = None,
    ) -> subprocess.CompletedProcess[bytes]:
        proc = subprocess.run(
            list(argv), input=stdin, capture_output=True, env=self._env, timeout=timeout
        )
        return _checked(self.name, argv, proc, check)


class SshRunner:
    """Runs on a host through ``ssh``; ``ssh_args`` select it (e.g. ``-F cfg host``)."""

    def __init__(self, name: str, ssh_args: Sequence[str]) -> None:
        self._name = name
        self._ssh_args = list(ssh_args)

    @property
    def name(self) -> str:
        return self._name

    def run(
        self,
        argv: Sequence[str],
        *,
        stdin: bytes | None = None,
        check: bool = True,
        timeout: float | None = None,
    ) -> subprocess.CompletedProcess[bytes]:
        cmd = ["ssh", "-o", "BatchMode=yes", *self._ssh_args, "--", shlex.join(argv)]
        proc = subprocess.run(cmd, input=stdin, capture_output=True, timeout=timeout)
        return _checked(self.name, argv, proc, check)
