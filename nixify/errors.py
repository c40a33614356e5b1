"""Errors nixify reports to a person: each names the host, file or field at fault."""

from __future__ import annotations


class NixifyError(Exception):
    """An error with a message fit to print as is (no traceback)."""

    exit_code = 2


class ConfigError(NixifyError):
    """Bad input data: an inventory, a host datum, a rule, a file."""


class RemoteError(NixifyError):
    """A command on a host (or a builder) failed."""

    def __init__(self, host: str, command: str, returncode: int, stderr: str = "") -> None:
        self.host = host
        self.command = command
        self.returncode = returncode
        self.stderr = stderr
        detail = stderr.strip().splitlines()[-1] if stderr.strip() else "no output"
        super().__init__(f"{host}: `{command}` exited {returncode}: {detail}")
