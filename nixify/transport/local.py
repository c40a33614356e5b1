"""This machine as a transport: the same scripts, the same results, no SSH."""

from __future__ import annotations

from collections.abc import Mapping

from nixify.transport.base import JOBS_DIR, Command, TransportBase, as_script
from nixify.transport.process import Deadline, spawn
from nixify.transport.result import Completed, HostUnreachable


class LocalTransport(TransportBase):
    """Runs on the operator's machine with ``sh -c`` (an argv is quoted exactly as
    it would be for a host). ``env`` is the whole environment (None: this
    process's); ``nixify.nix.local_transport()`` gives one with nixify's Nix
    settings."""

    def __init__(
        self,
        env: Mapping[str, str] | None = None,
        *,
        name: str = "local",
        jobs_dir: str = JOBS_DIR,
    ) -> None:
        self._env = dict(env) if env is not None else None
        self._name = name
        self.jobs_dir = jobs_dir

    @property
    def name(self) -> str:
        return self._name

    def run(
        self,
        command: Command,
        *,
        stdin: bytes | None = None,
        timeout: float | None = None,
        check: bool = False,
    ) -> Completed:
        script = as_script(command)
        try:
            rc, out, err = spawn(["sh", "-c", script], stdin=stdin, timeout=timeout,
                                 env=self._env)
        except Deadline as exc:
            raise HostUnreachable(self._name, script, str(exc)) from None
        res = Completed(
            self._name, script, rc, out.decode(errors="replace"), err.decode(errors="replace")
        )
        return res.check() if check else res
