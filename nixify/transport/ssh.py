"""OpenSSH as a transport: one multiplexing policy, one error path.

Every command is ``ssh [caller's options] [policy] DESTINATION -- sh -c SCRIPT``.
The policy: ``BatchMode=yes`` (never a prompt), a ``ConnectTimeout``, keep-alives
that notice a dead connection, and one master connection per host
(``ControlMaster=auto``, ``ControlPersist``) whose sockets live in a directory
made on first use and removed by ``close_all()`` (also run at exit). The
caller's options come first, so they win where they set the same thing.

The script ends by printing its exit code on a marker line, which is taken off
stdout: a run that ends without it did not finish, and an exit code of 255
without it is OpenSSH's own (refused, dropped, timed out): ``HostUnreachable``.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Sequence

from nixify.transport.base import JOBS_DIR, Command, Transport, TransportBase, as_script
from nixify.transport.process import Deadline, spawn
from nixify.transport.result import Completed, HostUnreachable

SSH = "ssh"
CONNECT_TIMEOUT = 10
CONTROL_PERSIST = 60
_RC = b"\n__nixify_rc="
_RC_LINE = re.compile(rb"\n__nixify_rc=(-?\d+)\n\Z")

_lock = threading.Lock()
_control_dir: str | None = None
_masters: dict[tuple[str, ...], tuple[str, ...]] = {}  # key -> options + destination
_atexit = False


def _control_path() -> str:
    """``ControlPath`` for the masters; the directory is made on first use."""
    global _control_dir, _atexit
    with _lock:
        if _control_dir is None or not os.path.isdir(_control_dir):
            # A socket path must stay under ~100 bytes: %C is 40 more.
            parent = tempfile.gettempdir()
            _control_dir = tempfile.mkdtemp(
                prefix="nixify-ssh-", dir=parent if len(parent) <= 40 else "/tmp"
            )
            if not _atexit:
                atexit.register(close_all)
                _atexit = True
        return f"{_control_dir}/%C"


def _exit_master(control: str, args: Sequence[str]) -> None:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        subprocess.run(
            [SSH, "-o", f"ControlPath={control}", "-O", "exit", *args],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=10,
        )


def close_all() -> None:
    """End every master connection this process opened and remove their directory
    (a later command opens a new one)."""
    global _control_dir
    with _lock:
        directory, masters = _control_dir, list(_masters.values())
        _masters.clear()
        _control_dir = None
    if directory is None:
        return
    for args in masters:
        _exit_master(f"{directory}/%C", args)
    shutil.rmtree(directory, ignore_errors=True)


def parse_ssh_url(spec: str) -> tuple[str, list[str]]:
    """``[ssh://][user@]host[:port]`` -> (destination, ssh options for the port)."""
    dest = spec.removeprefix(SSH + "://").rstrip("/")
    host = dest.rsplit("@", 1)[-1]
    if ":" in host and not host.startswith("["):
        port = host.rsplit(":", 1)[1]
        if port.isdigit():
            return dest[: len(dest) - len(port) - 1], ["-p", port]
    return dest, []


class SshTransport(TransportBase):
    """A host over OpenSSH. ``ssh_args`` are ssh's arguments before the command:
    options, then the destination last (``nixify.inventory.ssh_args_from_data``,
    a lab's ``state.ssh_args(host)``, or ``["-F", config, host]``)."""

    def __init__(
        self,
        name: str,
        ssh_args: Sequence[str],
        *,
        connect_timeout: int = CONNECT_TIMEOUT,
        jobs_dir: str = JOBS_DIR,
        multiplex: bool = True,
    ) -> None:
        """``multiplex=False``: every command over a connection of its own (a check
        that a *new* SSH connection still reaches the host)."""
        args = list(ssh_args)
        if not args or args[-1].startswith("-"):
            raise ValueError(f"{name}: ssh arguments must end with the destination: {args}")
        self._name = name
        self._options = args[:-1]
        self._destination = args[-1]
        self._connect_timeout = connect_timeout
        self.jobs_dir = jobs_dir
        self.multiplex = multiplex

    @property
    def name(self) -> str:
        return self._name

    @property
    def destination(self) -> str:
        return self._destination

    def ssh_argv(self, remote_command: str) -> list[str]:
        """The full ``ssh`` command line for ``remote_command`` (registers the master)."""
        policy = [
            "-o", "BatchMode=yes",
            "-o", f"ConnectTimeout={self._connect_timeout}",
            "-o", "ServerAliveInterval=15",
            "-o", "ServerAliveCountMax=4",
        ]  # fmt: skip
        if not self.multiplex:
            policy += ["-o", "ControlMaster=no", "-o", "ControlPath=none"]
            return [SSH, *self._options, *policy, self._destination, "--", remote_command]
        control = _control_path()
        key = (*self._options, self._destination)
        with _lock:
            _masters.setdefault(key, key)
        policy += [
            "-o", "ControlMaster=auto",
            "-o", f"ControlPath={control}",
            "-o", f"ControlPersist={CONTROL_PERSIST}",
        ]  # fmt: skip
        return [SSH, *self._options, *policy, self._destination, "--", remote_command]

    def run(
        self,
        command: Command,
        *,
        stdin: bytes | None = None,
        timeout: float | None = None,
        check: bool = False,
    ) -> Completed:
        script = as_script(command)
        wrapped = f"( {script}\n) ; printf '\\n__nixify_rc=%s\\n' \"$?\""
        argv = self.ssh_argv("sh -c " + shlex.quote(wrapped))
        try:
            rc, out, err = spawn(argv, stdin=stdin, timeout=timeout)
        except Deadline as exc:
            raise HostUnreachable(self._name, script, str(exc)) from None
        except OSError as exc:
            raise HostUnreachable(self._name, script, f"cannot start ssh: {exc}") from None
        stderr = err.decode(errors="replace")
        m = _RC_LINE.search(out)
        if m is None:
            if rc == 255:
                said = [ln.strip() for ln in stderr.strip().splitlines() if ln.strip()]
                reason = said[-1] if said else "the connection ended before the command did"
                raise HostUnreachable(self._name, script, reason)
            stdout = out.decode(errors="replace")
        else:
            rc = int(m.group(1))
            stdout = out[: m.start()].decode(errors="replace")
        res = Completed(self._name, script, rc, stdout, stderr)
        return res.check() if check else res

    def close(self) -> None:
        """End this host's master connection (others stay)."""
        key = (*self._options, self._destination)
        with _lock:
            directory = _control_dir
            known = _masters.pop(key, None)
        if directory is not None and known is not None:
            _exit_master(f"{directory}/%C", known)


def nix_sshopts(options: Sequence[str]) -> str:
    """A ``NIX_SSHOPTS=...`` shell assignment (with a trailing space), or "" for none.
    Nix splits the value on whitespace: no option may contain any."""
    for o in options:
        if not o or any(c.isspace() for c in o):
            raise ValueError(f"NIX_SSHOPTS cannot carry {o!r} (Nix splits on whitespace)")
    return f"NIX_SSHOPTS={shlex.quote(' '.join(options))} " if options else ""


def copy_closure(
    source: Transport,
    paths: Sequence[str],
    destination: str,
    *,
    ssh_options: Sequence[str] = (),
    timeout: float | None = None,
    check: bool = False,
) -> Completed:
    """Run ``nix copy --to ssh://DESTINATION PATHS`` on ``source`` (a builder, or
    this machine): the closure goes from ``source``'s store straight into the
    destination's over SSH, with ``ssh_options`` as ``NIX_SSHOPTS``."""
    argv = ["nix", "copy", "--to", f"{SSH}://{destination}", *paths]
    return source.run(nix_sshopts(ssh_options) + as_script(argv), timeout=timeout, check=check)
